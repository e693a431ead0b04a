"""GMiner: ``GET /stat`` on the ``--api`` port.

Per device: ``gpu_id`` (older builds also ``cuda_id``), ``bus_id`` as a full PCI id
(``"0000:01:00.0"``, upper-case hex; only the domain width differs from NVML), ``speed``,
``accepted_shares``/``rejected_shares``, ``temperature``, ``fan``, ``power_usage`` (W).

The unit of ``speed`` is the version difference that matters:

* 1.x before 1.34: no unit key at all; ``speed`` is in the algorithm's native base unit
  (Sol/s for Equihash), so factor 1;
* 1.34: camelCase ``speedUnit: "Sol/s"`` (and ``powerUnit``);
* 2.x/3.x: snake_case ``speed_unit`` (``"H/s"``, or a prefixed unit), applied as given.

Totals: ``total_accepted_shares``/``total_rejected_shares`` when present (1.18+), else the sum of
the devices. GMiner has no total hashrate key; the total is the sum of the devices.
"""

from __future__ import annotations

from orchestrator.agents.miners._values import Payload, Reader, load
from orchestrator.agents.miners.reading import (
    DeviceReading,
    MinerReading,
    sum_counts,
    sum_known,
)

MINER = "gminer"


def parse_gminer(payload: Payload) -> MinerReading:
    """GMiner ``/stat`` JSON (1.x camelCase or 2.x+/3.x snake_case) -> `MinerReading`."""
    r = Reader(MINER)
    doc = r.obj(load(payload, miner=MINER), "stat")
    if "devices" not in doc:
        raise r.error("wrong_shape", "no devices list")
    unit_key = "speed_unit" if "speed_unit" in doc else "speedUnit"
    factor = r.unit_factor(r.text(doc.get(unit_key), unit_key), unit_key)
    devices = []
    for position, item in enumerate(r.arr(doc.get("devices"), "devices")):
        where = f"devices[{position}]"
        device = r.obj(item, where)
        ordinal = device.get("gpu_id", device.get("cuda_id", position))
        devices.append(
            DeviceReading(
                index=r.index(ordinal, f"{where}.gpu_id"),
                pci_bus_id=r.pci_from_text(
                    device.get("bus_id"), f"{where}.bus_id", short_form_base=16
                ),
                hashrate_hs=r.hashrate(device.get("speed"), f"{where}.speed", factor=factor),
                accepted_shares=r.count(device.get("accepted_shares"), f"{where} accepted"),
                rejected_shares=r.count(device.get("rejected_shares"), f"{where} rejected"),
                power_w=r.power_w(device.get("power_usage"), f"{where}.power_usage"),
                temperature_c=r.temperature_c(device.get("temperature"), f"{where}.temperature"),
                fan_pct=r.fan_pct(device.get("fan"), f"{where}.fan"),
                name=r.text(device.get("name"), f"{where}.name"),
            )
        )
    miner_text = r.text(doc.get("miner"), "miner")
    accepted = r.count(doc.get("total_accepted_shares"), "total_accepted_shares")
    rejected = r.count(doc.get("total_rejected_shares"), "total_rejected_shares")
    return MinerReading(
        miner=MINER,
        version=(miner_text.removeprefix("GMiner").strip() or None) if miner_text else None,
        algorithm=r.text(doc.get("algorithm"), "algorithm"),
        total_hashrate_hs=sum_known([device.hashrate_hs for device in devices]),
        accepted_shares=accepted
        if accepted is not None
        else sum_counts([device.accepted_shares for device in devices]),
        rejected_shares=rejected
        if rejected is not None
        else sum_counts([device.rejected_shares for device in devices]),
        power_w=sum_known([device.power_w for device in devices]),
        devices=tuple(devices),
    )
