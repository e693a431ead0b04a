"""Rigel (NVIDIA): JSON over HTTP on ``--api-bind`` (UG-Miner reads ``GET /stat``).

No upstream-published sample exists; the shape here comes from one third-party capture marked
UNVERIFIED and agrees with UG-Miner's parser. Top level: ``algorithm`` (``"a+b"`` when dual
mining), ``hashrate{<algo>: H/s}``, ``solution_stat{<algo>: {accepted, rejected, invalid}}``,
``power_usage`` (W). ``devices[]``: ``id``, ``name``, ``selected``, ``pci_address`` as hex
``"bus:device"`` (``"0b:0"``), ``monitoring_info{core_temperature, fan_speed, power_usage}``,
and per-algorithm ``hashrate``/``solution_stat`` maps.

The reading reports the first (primary) algorithm; devices the user did not select are not
mining and are left out.
"""

from __future__ import annotations

from orchestrator.agents.miners._values import JsonObject, Payload, Reader, load
from orchestrator.agents.miners.reading import DeviceReading, MinerReading, sum_known

MINER = "rigel"


def parse_rigel(payload: Payload) -> MinerReading:
    """Rigel stats JSON -> `MinerReading` (primary algorithm only)."""
    r = Reader(MINER)
    doc = r.obj(load(payload, miner=MINER), "stat")
    if "devices" not in doc and "hashrate" not in doc:
        raise r.error("wrong_shape", "neither devices nor hashrate present")
    rates = r.opt_obj(doc.get("hashrate"), "hashrate") or {}
    algorithm = r.text(doc.get("algorithm"), "algorithm")
    primary = algorithm.split("+", 1)[0].strip() if algorithm else next(iter(rates), None)
    total_stat = _stat(doc, primary, "solution_stat", r)
    devices = []
    for position, item in enumerate(r.opt_arr(doc.get("devices"), "devices")):
        where = f"devices[{position}]"
        device = r.obj(item, where)
        if device.get("selected") is False:
            continue
        monitoring = r.opt_obj(device.get("monitoring_info"), f"{where}.monitoring_info") or {}
        device_rates = r.opt_obj(device.get("hashrate"), f"{where}.hashrate") or {}
        stat = _stat(device, primary, f"{where}.solution_stat", r)
        devices.append(
            DeviceReading(
                index=r.index(device.get("id", position), f"{where}.id"),
                pci_bus_id=r.pci_from_text(
                    device.get("pci_address"), f"{where}.pci_address", short_form_base=16
                ),
                hashrate_hs=r.hashrate(
                    device_rates.get(primary) if primary else None, f"{where}.hashrate"
                ),
                accepted_shares=r.count(stat.get("accepted"), f"{where} accepted"),
                rejected_shares=r.count(stat.get("rejected"), f"{where} rejected"),
                power_w=r.power_w(monitoring.get("power_usage"), f"{where} power_usage"),
                temperature_c=r.temperature_c(
                    monitoring.get("core_temperature"), f"{where} core_temperature"
                ),
                fan_pct=r.fan_pct(monitoring.get("fan_speed"), f"{where} fan_speed"),
                name=r.text(device.get("name"), f"{where}.name"),
            )
        )
    total = r.hashrate(rates.get(primary) if primary else None, "hashrate")
    return MinerReading(
        miner=MINER,
        version=r.text(doc.get("version"), "version"),
        algorithm=primary,
        total_hashrate_hs=total
        if total is not None
        else sum_known([device.hashrate_hs for device in devices]),
        accepted_shares=r.count(total_stat.get("accepted"), "solution_stat accepted"),
        rejected_shares=r.count(total_stat.get("rejected"), "solution_stat rejected"),
        power_w=r.power_w(doc.get("power_usage"), "power_usage"),
        devices=tuple(devices),
    )


def _stat(doc: JsonObject, algorithm: str | None, where: str, r: Reader) -> JsonObject:
    stats = r.opt_obj(doc.get("solution_stat"), where) or {}
    if algorithm is None:
        return {}
    return r.opt_obj(stats.get(algorithm), f"{where}.{algorithm}") or {}
