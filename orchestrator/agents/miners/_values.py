"""Typed access to untrusted miner JSON, unit normalisation and PCI bus ids.

Miner APIs are written by many people over many years: the same quantity arrives as an int, a
float, a numeric string, a string with a unit (``"31.2 MH/s"``, ``"61.50 M"``), ``null`` during
warm-up, or a sentinel such as ``-1`` for "no sensor". The per-miner parsers stay short because
every value goes through one of the accessors here, which either return a clean Python value or
raise `MinerApiError` -- never `KeyError`, `TypeError` or a silent NaN.

Rules applied everywhere:

* hashrates and share counts must be finite and non-negative, else ``bad_value``;
* sensor readings (power, temperature, fan) that are negative are the miners' "unknown" sentinel
  and become ``None``; power and temperature of exactly 0 are also "not reported" (lolMiner,
  XMRig's CUDA plugin), a fan at 0 % is a real reading;
* hashrates are converted to base units per second (H/s; Sol/s and graphs/s count as the base
  unit of their algorithm, which is how hashprice tables quote them);
* PCI addresses come out in NVML's ``nvmlPciInfo_t.busId`` form, ``00000000:01:00.0``, upper-case
  hex, so a device joins its NVML GPU by plain string equality.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from orchestrator.agents.miners.errors import MinerApiError

JsonObject = Mapping[str, object]
Payload = bytes | bytearray | str | Mapping[str, object] | list[object]

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


def _reject_constant(name: str) -> object:
    raise ValueError(f"non-finite constant {name}")


def decode_json(raw: bytes | bytearray | str, *, miner: str) -> object:
    """Bytes or text to a JSON value; NUL terminators and a BOM are tolerated."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise MinerApiError("too_large", f"{len(raw)} bytes", miner=miner)
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes | bytearray) else raw
        text = text.strip().strip("\x00").strip()
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise MinerApiError("not_json", _short(str(exc)), miner=miner) from None


def load(payload: Payload, *, miner: str) -> object:
    """Decode `payload` when it is still bytes or text; pass parsed JSON through."""
    if isinstance(payload, bytes | bytearray | str):
        return decode_json(payload, miner=miner)
    return payload


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Reader:
    """Accessors bound to one miner name, so every error names the miner it came from."""

    def __init__(self, miner: str) -> None:
        self.miner = miner

    def error(self, reason: str, detail: str) -> MinerApiError:
        return MinerApiError(reason, detail, miner=self.miner)

    # ------------------------------------------------------------------ shapes
    def obj(self, value: object, where: str) -> JsonObject:
        if not isinstance(value, Mapping):
            raise self.error("wrong_shape", f"{where} is {_kind(value)}, expected an object")
        return value

    def opt_obj(self, value: object, where: str) -> JsonObject | None:
        return None if value is None else self.obj(value, where)

    def arr(self, value: object, where: str) -> list[object]:
        if not isinstance(value, list):
            raise self.error("wrong_shape", f"{where} is {_kind(value)}, expected a list")
        return value

    def opt_arr(self, value: object, where: str) -> list[object]:
        return [] if value is None else self.arr(value, where)

    def text(self, value: object, where: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error("wrong_shape", f"{where} is {_kind(value)}, expected a string")
        try:
            text = str(value).strip()
        except ValueError:  # an int too long to print
            raise self.error("bad_value", f"{where} is out of range") from None
        return text or None

    # ------------------------------------------------------------------ numbers
    def number(self, value: object, where: str) -> float | None:
        """A finite float, or None for null; numeric strings are accepted."""
        if value is None:
            return None
        if isinstance(value, bool):
            raise self.error("wrong_shape", f"{where} is a boolean, expected a number")
        if isinstance(value, str):
            text = value
            try:
                value = float(text.strip())
            except ValueError:
                raise self.error("bad_value", f"{where} = {_short(text, 40)!r}") from None
        if not isinstance(value, int | float):
            raise self.error("wrong_shape", f"{where} is {_kind(value)}, expected a number")
        try:
            result = float(value)
        except OverflowError:
            raise self.error("bad_value", f"{where} is out of range") from None
        if not math.isfinite(result):
            raise self.error("bad_value", f"{where} is not finite")
        return result

    def count(self, value: object, where: str) -> int | None:
        """A non-negative whole number (share counters), or None."""
        result = self.number(value, where)
        if result is None:
            return None
        if result < 0 or result != int(result):
            raise self.error("bad_value", f"{where} = {result} is not a share count")
        return int(result)

    def index(self, value: object, where: str) -> int:
        """A device ordinal as the miner numbers it; required."""
        result = self.count(value, where)
        if result is None:
            raise self.error("wrong_shape", f"{where} is missing")
        return result

    def hashrate(self, value: object, where: str, *, factor: float = 1.0) -> float | None:
        """A hashrate in H/s. `factor` converts the miner's unit; strings may carry their own."""
        if isinstance(value, str) and _RATE_TEXT.match(value.strip()):
            return self.rate_text(value, where, default_factor=factor)
        result = self.number(value, where)
        if result is None:
            return None
        if result < 0:
            raise self.error("bad_value", f"{where} = {result} is negative")
        return _finite(result * factor, where, self)

    def rate_text(self, value: str, where: str, *, default_factor: float = 1.0) -> float:
        """``"31.2 MH/s"``, ``"61.50 M"``, ``"5798.28"`` -> H/s."""
        match = _RATE_TEXT.match(value.strip())
        if match is None:
            raise self.error("bad_value", f"{where} = {_short(value, 40)!r} is not a hashrate")
        try:
            amount = float(match.group(1))
        except ValueError:
            raise self.error("bad_value", f"{where} = {_short(value, 40)!r}") from None
        if not math.isfinite(amount) or amount < 0:
            raise self.error("bad_value", f"{where} = {_short(value, 40)!r}")
        unit = match.group(2)
        factor = self.unit_factor(unit, where) if unit else default_factor
        return _finite(amount * factor, where, self)

    def unit_factor(self, unit: str | None, where: str) -> float:
        """Multiplier from a miner's unit string to base units per second; None means 1."""
        factor = unit_factor(unit)
        if factor is None:
            raise self.error("bad_unit", f"{where} = {unit!r} is not a hashrate unit")
        return factor

    def sensor(self, value: object, where: str, *, zero_is_unknown: bool) -> float | None:
        """Power, temperature or fan: negative sentinels and (optionally) 0 mean unknown."""
        result = self.number(value, where)
        if result is None or result < 0 or (zero_is_unknown and result == 0):
            return None
        return result

    def power_w(self, value: object, where: str) -> float | None:
        return self.sensor(value, where, zero_is_unknown=True)

    def temperature_c(self, value: object, where: str) -> float | None:
        return self.sensor(value, where, zero_is_unknown=True)

    def fan_pct(self, value: object, where: str) -> float | None:
        return self.sensor(value, where, zero_is_unknown=False)

    # ------------------------------------------------------------------ PCI
    def pci_from_int(
        self, bus: object, where: str, *, domain: object = None, device: object = None
    ) -> str | None:
        """A decimal bus number (T-Rex, NBMiner, SRBMiner) -> NVML bus id."""
        bus_n = self.count(bus, where)
        if bus_n is None:
            return None
        return self._format_pci(
            domain=self.count(domain, f"{where} domain") or 0,
            bus=bus_n,
            device=self.count(device, f"{where} device") or 0,
            function=0,
            where=where,
        )

    def pci_from_text(self, value: object, where: str, *, short_form_base: int) -> str | None:
        """A bus id string in any form seen in the wild -> NVML bus id.

        ``dddd:bb:dd.f`` / ``dddddddd:bb:dd.f`` / ``bb:dd.f`` are hex (the Linux notation).
        The short ``bus:dev`` and a bare bus number are read in `short_form_base`, which is a
        per-miner fact (Rigel prints hex, lolMiner prints decimal).
        """
        if isinstance(value, int) and not isinstance(value, bool):
            return self.pci_from_int(value, where)
        text = self.text(value, where)
        if text is None:
            return None
        full = _BDF.match(text)
        if full is not None:
            dom, bus, dev, fn = full.groups()
            return self._format_pci(
                domain=int(dom or "0", 16),
                bus=int(bus, 16),
                device=int(dev, 16),
                function=int(fn, 16),
                where=where,
            )
        short = _BUS_DEV.match(text)
        if short is not None:
            bus, dev = short.groups()
            try:
                bus_n = int(bus, short_form_base)
                dev_n = int(dev or "0", short_form_base)
            except ValueError:
                raise self.error("bad_value", f"{where} = {text!r} is not a PCI address") from None
            return self._format_pci(domain=0, bus=bus_n, device=dev_n, function=0, where=where)
        raise self.error("bad_value", f"{where} = {_short(text, 40)!r} is not a PCI address")

    def _format_pci(self, *, domain: int, bus: int, device: int, function: int, where: str) -> str:
        if not (domain <= 0xFFFFFFFF and bus <= 0xFF and device <= 0x1F and function <= 7):
            raise self.error("bad_value", f"{where}: PCI address out of range")
        return f"{domain:08X}:{bus:02X}:{device:02X}.{function:X}"


def _finite(value: float, where: str, reader: Reader) -> float:
    if not math.isfinite(value):
        raise reader.error("bad_value", f"{where} overflows")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


_BDF = re.compile(r"^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")
_BUS_DEV = re.compile(r"^([0-9a-fA-F]{1,3})(?::([0-9a-fA-F]{1,2}))?$")
_RATE_TEXT = re.compile(r"^([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z][A-Za-z/\\]*)?$")

_SI_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15, "e": 1e18}
# With "/s": the base word is required, so "g/s" is graphs (Cuckoo), not giga.
_UNIT_PER_S = re.compile(r"^([kmgtpe]?)(h|hash|hashes|sol|sols|g|graph|graphs)$")
# Without "/s" (NBMiner's "61.50 M"): a bare letter is an SI prefix.
_UNIT_BARE = re.compile(r"^([kmgtpe]?)(h|hash|hashes|sol|sols|hs)?$")


def unit_factor(unit: str | None) -> float | None:
    """``"mh/s"``, ``"Mh\\/s"``, ``"kH/s"``, ``"Sol/s"``, ``"H/s"``, ``"M"`` -> multiplier."""
    if unit is None:
        return 1.0
    norm = unit.replace("\\", "").replace(" ", "").lower()
    for suffix in ("/sec", "/s"):
        if norm.endswith(suffix) and len(norm) > len(suffix):
            match = _UNIT_PER_S.match(norm[: -len(suffix)])
            return _SI_PREFIX[match.group(1)] if match else None
    match = _UNIT_BARE.match(norm)
    return _SI_PREFIX[match.group(1)] if match else None
