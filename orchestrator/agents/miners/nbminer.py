"""NBMiner: ``GET /api/v1/status``.

``miner.devices[]`` carries ``id`` (the miner's ordinal), ``pci_bus_id`` (decimal bus number),
``info`` (the board name), ``power`` (W), ``temperature``, ``fan`` (%), share counters, and the
hashrate in two forms whose meaning changed across versions:

* ``hashrate_raw``: H/s as a float -- always preferred when present;
* ``hashrate``: a plain number in H/s in v10, a display string with an SI suffix in later
  versions (``"61.50 M"``), parsed with its suffix when no raw value exists.

Totals: ``miner.total_hashrate_raw`` (else ``total_hashrate``, else the sum of devices),
``miner.total_power_consume`` (W), shares from ``stratum.accepted_shares``/``rejected_shares``.
Dual-mining second hashrates (``hashrate2*``) are not reported.
"""

from __future__ import annotations

from orchestrator.agents.miners._values import JsonObject, Payload, Reader, load
from orchestrator.agents.miners.reading import (
    DeviceReading,
    MinerReading,
    sum_counts,
    sum_known,
)

MINER = "nbminer"


def parse_nbminer(payload: Payload) -> MinerReading:
    """NBMiner ``/api/v1/status`` JSON (v10 numeric or later string hashrates) -> reading."""
    r = Reader(MINER)
    doc = r.obj(load(payload, miner=MINER), "status")
    miner = r.obj(doc.get("miner"), "miner")
    stratum = r.opt_obj(doc.get("stratum"), "stratum") or {}
    devices = []
    for position, item in enumerate(r.arr(miner.get("devices"), "miner.devices")):
        where = f"miner.devices[{position}]"
        device = r.obj(item, where)
        devices.append(
            DeviceReading(
                index=r.index(device.get("id", position), f"{where}.id"),
                pci_bus_id=r.pci_from_text(
                    device.get("pci_bus_id"), f"{where}.pci_bus_id", short_form_base=10
                ),
                hashrate_hs=_rate(device, "hashrate", where, r),
                accepted_shares=r.count(device.get("accepted_shares"), f"{where} accepted"),
                rejected_shares=r.count(device.get("rejected_shares"), f"{where} rejected"),
                power_w=r.power_w(device.get("power"), f"{where}.power"),
                temperature_c=r.temperature_c(device.get("temperature"), f"{where}.temperature"),
                fan_pct=r.fan_pct(device.get("fan"), f"{where}.fan"),
                name=r.text(device.get("info"), f"{where}.info"),
            )
        )
    total = _rate(miner, "total_hashrate", "miner", r)
    accepted = r.count(stratum.get("accepted_shares"), "stratum.accepted_shares")
    rejected = r.count(stratum.get("rejected_shares"), "stratum.rejected_shares")
    version = r.text(doc.get("version"), "version")
    return MinerReading(
        miner=MINER,
        version=version.removeprefix("v") if version else None,
        algorithm=r.text(stratum.get("algorithm"), "stratum.algorithm"),
        total_hashrate_hs=total
        if total is not None
        else sum_known([device.hashrate_hs for device in devices]),
        accepted_shares=accepted
        if accepted is not None
        else sum_counts([device.accepted_shares for device in devices]),
        rejected_shares=rejected
        if rejected is not None
        else sum_counts([device.rejected_shares for device in devices]),
        power_w=r.power_w(miner.get("total_power_consume"), "miner.total_power_consume"),
        devices=tuple(devices),
    )


def _rate(doc: JsonObject, key: str, where: str, r: Reader) -> float | None:
    raw = r.hashrate(doc.get(f"{key}_raw"), f"{where}.{key}_raw")
    if raw is not None:
        return raw
    return r.hashrate(doc.get(key), f"{where}.{key}")
