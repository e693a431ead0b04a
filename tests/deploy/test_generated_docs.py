"""docs/config-reference.md and docs/mqtt-protocol.md are what scripts/gen_docs.py makes from
the code today: a new config key or payload field that is not in the docs fails here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_docs", module)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.mark.parametrize("relative", sorted(GEN.OUTPUTS))
def test_generated_doc_is_up_to_date(relative: str) -> None:
    expected = GEN.OUTPUTS[relative]()
    actual = (ROOT / relative).read_text(encoding="utf-8")
    assert actual == expected, f"{relative} is out of date: run python scripts/gen_docs.py"


def test_config_reference_covers_every_key_of_both_roots() -> None:
    from orchestrator.config import AgentConfig, ServeConfig  # noqa: PLC0415

    text = GEN.render_config_reference()
    for root in (ServeConfig, AgentConfig):
        for name in root.model_fields:
            assert f"[{name}]" in text or f"[[{name}]]" in text, name
    assert "| `node_offline_after_s` | number | `10.0` | > 0, ≤ 86400 |" in text
    # serve and agent listen on different default ports: defaults come from each root
    assert "| `port` | integer | `9850` |" in text
    assert "| `port` | integer | `9851` |" in text


def test_defaults_that_depend_on_the_machine_are_not_rendered() -> None:
    """The node name defaults to the hostname: the docs must not say which machine made them."""
    text = GEN.render_config_reference()
    assert "| `name` | string | (computed at start) |" in text


def test_protocol_doc_has_every_topic_and_payload_schema() -> None:
    text = GEN.render_mqtt_protocol()
    for channel in ("status", "telemetry", "commands", "events"):
        assert f"`fleet/v1/<site>/nodes/<node>/{channel}`" in text
    for model in GEN._payload_models():
        assert f"### {model.__name__}" in text
        assert f'"title": "{model.__name__}"' in text
