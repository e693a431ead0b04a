"""Whole-fleet renderings written as text: the per-GPU metric families.

At 10,000 GPUs `/metrics` made a prometheus_client `Sample` per GPU and family (80,000)
and formatted each label set again on every scrape. `Family` and `LabelCache` (used by
`metrics.py` and `plan_metrics.py`) write the same exposition by concatenating strings: each
GPU's label set (`gpu`, `UUID`, `modelName`, `Hostname`) is escaped once and remembered by
its values; a line is the family name, the labels (sorted by name, as prometheus_client
sorts them) and the value formatted as prometheus_client formats it (`floatToGoString`).

"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.utils import floatToGoString as _untyped_float_to_go  # noqa: N813


def floatToGoString(value: float) -> str:  # noqa: N802  (prometheus_client's name)
    """prometheus_client's own value formatting, typed."""
    text: str = _untyped_float_to_go(value)  # type: ignore[no-untyped-call]
    return text


# ------------------------------------------------------------------ per-GPU metric families


class LabelCache:
    """Escaped dcgm-style label sets, remembered by their values."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, ...], str] = {}

    def get(self, *values: str) -> str:
        text = self._labels.get(values)
        if text is None:
            if len(self._labels) > 200_000:  # a fleet that keeps renaming: start over
                self._labels.clear()
            text = self._labels[values] = _label_set(_LABEL_NAMES, values)
        return text

    def host(self, node: str) -> str:
        """The label set of a node's own gauges: `Hostname` alone."""
        return self.get_named(("Hostname",), node)

    def get_named(self, names: tuple[str, ...], *values: str) -> str:
        key = (*names, "=", *values)
        text = self._labels.get(key)
        if text is None:
            text = self._labels[key] = _label_set(names, values)
        return text


_LABEL_NAMES = ("gpu", "UUID", "modelName", "Hostname", "workload", "state")


def _label_set(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """`name="value",...` sorted by name, as prometheus_client writes a sample's labels."""
    pairs = sorted(zip(names, values, strict=False))
    return ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class Family:
    """One gauge family's exposition lines (HELP, TYPE, then one line per sample)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
        self.lines = [f"# HELP {name} {help_text}\n# TYPE {name} gauge\n"]

    def add(self, labels: str, value: float) -> None:
        self.lines.append(f"{self.name}{{{labels}}} {floatToGoString(value)}\n")


def join(families: Iterable[Family]) -> str:
    return "".join(line for family in families for line in family.lines)
