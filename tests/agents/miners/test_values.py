"""Unit and PCI normalisation: the rules every parser relies on."""

from __future__ import annotations

import pytest

from orchestrator.agents.miners import MinerApiError
from orchestrator.agents.miners._values import Reader, decode_json, unit_factor

R = Reader("test")


@pytest.mark.parametrize(
    ("unit", "factor"),
    [
        (None, 1.0),
        ("H/s", 1.0),
        ("h/s", 1.0),
        ("kH/s", 1e3),
        ("mh/s", 1e6),
        ("Mh\\/s", 1e6),
        ("MH/s", 1e6),
        ("GH/s", 1e9),
        ("TH/s", 1e12),
        ("sol/s", 1.0),
        ("Sol/s", 1.0),
        ("ksol/s", 1e3),
        ("g/s", 1.0),
        ("M", 1e6),
        ("k", 1e3),
        ("G", 1e9),
        ("", 1.0),
    ],
)
def test_unit_strings_map_to_multipliers_to_base_units(unit: str | None, factor: float) -> None:
    assert unit_factor(unit) == factor


@pytest.mark.parametrize("unit", ["W", "Sol/W", "furlongs/s", "mhz"])
def test_non_hashrate_units_are_refused(unit: str) -> None:
    assert unit_factor(unit) is None
    with pytest.raises(MinerApiError) as err:
        R.unit_factor(unit, "unit")
    assert err.value.reason == "bad_unit"


@pytest.mark.parametrize(
    ("text", "hs"),
    [
        ("31.2 MH/s", 31.2e6),
        ("61.50 M", 61.5e6),
        ("950.0 k", 950e3),
        ("5798.28", 5798.28),
        ("12 Sol/s", 12.0),
        ("1.5GH/s", 1.5e9),
    ],
)
def test_hashrate_strings_carry_their_own_unit(text: str, hs: float) -> None:
    assert R.hashrate(text, "rate") == pytest.approx(hs)


def test_bare_numeric_hashrate_strings_use_the_callers_factor() -> None:
    assert R.hashrate("2.5", "rate", factor=1e6) == pytest.approx(2.5e6)


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), float("inf"), "-3 MH/s", "fast", True])
def test_negative_nan_or_nonsense_hashrates_raise(value: object) -> None:
    with pytest.raises(MinerApiError):
        R.hashrate(value, "rate")


def test_null_hashrate_is_unknown_not_zero() -> None:
    assert R.hashrate(None, "rate") is None
    assert R.hashrate(0, "rate") == 0.0


def test_sensor_sentinels_become_unknown() -> None:
    assert R.temperature_c(-1, "t") is None
    assert R.temperature_c(0, "t") is None
    assert R.power_w(0, "p") is None
    assert R.fan_pct(0, "f") == 0.0
    assert R.power_w(181.5, "p") == 181.5


@pytest.mark.parametrize(
    ("text", "base", "nvml"),
    [
        ("0000:01:00.0", 16, "00000000:01:00.0"),
        ("0000:0a:00.0", 16, "00000000:0A:00.0"),
        ("00000001:84:00.0", 16, "00000001:84:00.0"),
        ("01:00.0", 16, "00000000:01:00.0"),
        ("0b:0", 16, "00000000:0B:00.0"),
        ("16:0", 10, "00000000:10:00.0"),
        ("1", 10, "00000000:01:00.0"),
        (33, 10, "00000000:21:00.0"),
    ],
)
def test_pci_bus_ids_in_any_form_come_out_in_nvml_form(text: object, base: int, nvml: str) -> None:
    assert R.pci_from_text(text, "bus", short_form_base=base) == nvml


def test_integer_bus_with_domain_and_device() -> None:
    assert R.pci_from_int(10, "bus", domain=1, device=3) == "00000001:0A:03.0"


@pytest.mark.parametrize("text", ["zz:00.0", "1:2:3:4", "300:0", "01:00.9"])
def test_malformed_pci_addresses_raise(text: str) -> None:
    with pytest.raises(MinerApiError) as err:
        R.pci_from_text(text, "bus", short_form_base=16)
    assert err.value.reason == "bad_value"


def test_json_decoding_tolerates_nul_terminator_and_bom_but_not_nan() -> None:
    assert decode_json(b'{"a": 1}\x00', miner="x") == {"a": 1}
    assert decode_json("\ufeff[1]".encode(), miner="x") == [1]
    with pytest.raises(MinerApiError) as err:
        decode_json(b'{"a": NaN}', miner="x")
    assert err.value.reason == "not_json"
