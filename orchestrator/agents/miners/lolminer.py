"""lolMiner (AMD and NVIDIA): two API shapes, told apart by their keys.

Legacy (up to 1.2x, ``GET /summary``): ``Session.Performance_Summary`` with
``Session.Performance_Unit`` (``"mh/s"``, ``"sol/s"``; absent in 0.x, where the Equihash family
is counted in Sol/s, i.e. factor 1) and ``GPUs[]`` with ``Performance`` in that unit,
``"Consumption (W)"``, ``"Temp (deg C)"`` (``"Temps (deg C)"`` in 1.0), ``"Fan Speed (%)"``,
``Session_Accepted``/``Session_Submitted`` (rejected = submitted - accepted).

New (1.3x+, served at ``/`` and ``/summary``): ``Workers[]`` (Index, Name, Power, Core_Temp,
Fan_Speed, PCIE_Address) and ``Algorithms[]`` whose ``Worker_*`` arrays are indexed by position
in ``Workers``; ``Performance_Factor`` (e.g. 1e6) converts to H/s and wins over the unit string.
With dual mining the first algorithm is the one reported.

lolMiner lists AMD and NVIDIA GPUs in one sequence, so ``Index`` is not an NVML index; the join
key is ``PCIE_Address`` ``"bus:device"``. Its base is undocumented; it is read as decimal here,
because the 4x Radeon VII sample reads ``3, 16, 19, 22`` -- evenly spaced by 3 (each card sits
behind its own PCIe switch) only in decimal. Power and temperature of 0 mean "not measured".
"""

from __future__ import annotations

from orchestrator.agents.miners._values import JsonObject, Payload, Reader, load
from orchestrator.agents.miners.reading import (
    DeviceReading,
    MinerReading,
    sum_counts,
    sum_known,
)

MINER = "lolminer"
_PCIE_BASE = 10


def parse_lolminer(payload: Payload) -> MinerReading:
    """lolMiner legacy ``/summary`` or new root JSON -> `MinerReading`."""
    r = Reader(MINER)
    doc = r.obj(load(payload, miner=MINER), "summary")
    if "Workers" in doc or "Algorithms" in doc:
        return _parse_workers(doc, r)
    if "GPUs" in doc or "Session" in doc:
        return _parse_legacy(doc, r)
    raise r.error("wrong_shape", "neither Workers/Algorithms nor Session/GPUs present")


def _version(doc: JsonObject, r: Reader) -> str | None:
    software = r.text(doc.get("Software"), "Software")
    if software is None:
        return None
    return software.removeprefix("lolMiner").strip() or None


def _parse_legacy(doc: JsonObject, r: Reader) -> MinerReading:
    session = r.opt_obj(doc.get("Session"), "Session") or {}
    mining = r.opt_obj(doc.get("Mining"), "Mining") or {}
    unit = r.text(session.get("Performance_Unit"), "Session.Performance_Unit")
    factor = r.unit_factor(unit, "Session.Performance_Unit")
    devices = []
    for position, item in enumerate(r.opt_arr(doc.get("GPUs"), "GPUs")):
        where = f"GPUs[{position}]"
        gpu = r.obj(item, where)
        accepted = r.count(gpu.get("Session_Accepted"), f"{where}.Session_Accepted")
        submitted = r.count(gpu.get("Session_Submitted"), f"{where}.Session_Submitted")
        temperature = gpu.get("Temp (deg C)", gpu.get("Temps (deg C)"))
        devices.append(
            DeviceReading(
                index=r.index(gpu.get("Index", position), f"{where}.Index"),
                pci_bus_id=r.pci_from_text(
                    gpu.get("PCIE_Address"), f"{where}.PCIE_Address", short_form_base=_PCIE_BASE
                ),
                hashrate_hs=r.hashrate(
                    gpu.get("Performance"), f"{where}.Performance", factor=factor
                ),
                accepted_shares=accepted,
                rejected_shares=_rejected(accepted, submitted),
                power_w=r.power_w(gpu.get("Consumption (W)"), f"{where} power"),
                temperature_c=r.temperature_c(temperature, f"{where} temperature"),
                fan_pct=r.fan_pct(gpu.get("Fan Speed (%)"), f"{where} fan"),
                name=r.text(gpu.get("Name"), f"{where}.Name"),
            )
        )
    total = r.hashrate(
        session.get("Performance_Summary"), "Session.Performance_Summary", factor=factor
    )
    accepted = r.count(session.get("Accepted"), "Session.Accepted")
    submitted = r.count(session.get("Submitted"), "Session.Submitted")
    return MinerReading(
        miner=MINER,
        version=_version(doc, r),
        algorithm=r.text(mining.get("Algorithm"), "Mining.Algorithm"),
        total_hashrate_hs=total
        if total is not None
        else sum_known([device.hashrate_hs for device in devices]),
        accepted_shares=accepted,
        rejected_shares=_rejected(accepted, submitted),
        power_w=r.power_w(session.get("TotalPower"), "Session.TotalPower"),
        devices=tuple(devices),
    )


def _rejected(accepted: int | None, submitted: int | None) -> int | None:
    if accepted is None or submitted is None or submitted < accepted:
        return None
    return submitted - accepted


def _parse_workers(doc: JsonObject, r: Reader) -> MinerReading:
    workers = r.opt_arr(doc.get("Workers"), "Workers")
    algorithms = r.opt_arr(doc.get("Algorithms"), "Algorithms")
    algo: JsonObject = r.obj(algorithms[0], "Algorithms[0]") if algorithms else {}
    factor = r.number(algo.get("Performance_Factor"), "Performance_Factor")
    if factor is None:
        unit = r.text(algo.get("Performance_Unit"), "Performance_Unit")
        factor = r.unit_factor(unit, "Performance_Unit")
    elif factor <= 0:
        raise r.error("bad_value", f"Performance_Factor = {factor}")
    performance = r.opt_arr(algo.get("Worker_Performance"), "Worker_Performance")
    accepted = r.opt_arr(algo.get("Worker_Accepted"), "Worker_Accepted")
    rejected = r.opt_arr(algo.get("Worker_Rejected"), "Worker_Rejected")
    devices = []
    for position, item in enumerate(workers):
        where = f"Workers[{position}]"
        worker = r.obj(item, where)
        devices.append(
            DeviceReading(
                index=r.index(worker.get("Index", position), f"{where}.Index"),
                pci_bus_id=r.pci_from_text(
                    worker.get("PCIE_Address"),
                    f"{where}.PCIE_Address",
                    short_form_base=_PCIE_BASE,
                ),
                hashrate_hs=r.hashrate(
                    _at(performance, position), f"Worker_Performance[{position}]", factor=factor
                ),
                accepted_shares=r.count(_at(accepted, position), f"Worker_Accepted[{position}]"),
                rejected_shares=r.count(_at(rejected, position), f"Worker_Rejected[{position}]"),
                power_w=r.power_w(worker.get("Power"), f"{where}.Power"),
                temperature_c=r.temperature_c(worker.get("Core_Temp"), f"{where}.Core_Temp"),
                fan_pct=r.fan_pct(worker.get("Fan_Speed"), f"{where}.Fan_Speed"),
                name=r.text(worker.get("Name"), f"{where}.Name"),
            )
        )
    total = r.hashrate(algo.get("Total_Performance"), "Total_Performance", factor=factor)
    return MinerReading(
        miner=MINER,
        version=_version(doc, r),
        algorithm=r.text(algo.get("Algorithm"), "Algorithm"),
        total_hashrate_hs=total
        if total is not None
        else sum_known([device.hashrate_hs for device in devices]),
        accepted_shares=r.count(algo.get("Total_Accepted"), "Total_Accepted")
        if "Total_Accepted" in algo
        else sum_counts([d.accepted_shares for d in devices]),
        rejected_shares=r.count(algo.get("Total_Rejected"), "Total_Rejected")
        if "Total_Rejected" in algo
        else sum_counts([d.rejected_shares for d in devices]),
        power_w=sum_known([device.power_w for device in devices]),
        devices=tuple(devices),
    )


def _at(values: list[object], position: int) -> object:
    return values[position] if position < len(values) else None
