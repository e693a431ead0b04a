"""XMRig: ``GET /1/summary`` (same object as ``/2/summary`` and legacy ``/api.json``) plus,
for GPUs, ``GET /2/backends``.

The summary gives the miner-wide picture: ``version``, ``algo``, ``hashrate.total`` as a
``[10s, 60s, 15m]`` array in H/s whose windows are ``null`` until they fill (the first non-null
window is used), and ``results.shares_good``/``shares_total`` (rejected = total - good).

Per-GPU data only exists in ``/2/backends`` (5.x+): each enabled ``cuda``/``opencl`` backend lists
``threads[]`` with ``index`` (the miner's GPU ordinal; several threads may share one GPU, so they
are summed per index), ``bus_id`` (``"01:00.0"``, no domain), ``name`` and
``health{temperature, power, fan_speed[]}``. The CUDA plugin reports ``power: 0`` when NVML power
is unavailable; that is read as unknown. CPU threads are not devices.

Legacy xmrig-nvidia 2.x puts ``health[]`` (name, power, temp, fan) in the summary itself, without
bus ids and without a thread-to-GPU mapping, so those devices carry no hashrate.

`parse_xmrig` accepts the summary object, the backends list, or both in the envelope
``{"summary": {...}, "backends": [...]}`` that the HTTP reader builds from its two requests.
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.agents.miners._values import JsonObject, Payload, Reader, load
from orchestrator.agents.miners.reading import DeviceReading, MinerReading, sum_known

MINER = "xmrig"
_GPU_BACKENDS = ("cuda", "opencl")


def parse_xmrig(payload: Payload) -> MinerReading:
    """XMRig summary, backends, or ``{"summary", "backends"}`` envelope -> `MinerReading`."""
    r = Reader(MINER)
    doc = load(payload, miner=MINER)
    summary: JsonObject | None
    backends: list[object] | None
    if isinstance(doc, list):
        summary, backends = None, doc
    else:
        obj = r.obj(doc, "summary")
        if "hashrate" not in obj and ("summary" in obj or "backends" in obj):
            summary = r.opt_obj(obj.get("summary"), "summary")
            backends = r.arr(obj["backends"], "backends") if obj.get("backends") else None
        else:
            summary, backends = obj, None
    if summary is None and backends is None:
        raise r.error("wrong_shape", "neither a summary nor backends")
    if summary is not None and "hashrate" not in summary:
        raise r.error("wrong_shape", "summary has no hashrate")

    devices: list[DeviceReading] = []
    backend_total: float | None = None
    algorithm: str | None = None
    if backends is not None:
        devices, backend_total, algorithm = _from_backends(backends, r)
    total: float | None = backend_total
    version = accepted = rejected = None
    if summary is not None:
        hashrate = r.obj(summary.get("hashrate"), "hashrate")
        total = _window(hashrate.get("total"), "hashrate.total", r)
        version = r.text(summary.get("version"), "version")
        algorithm = r.text(summary.get("algo"), "algo") or algorithm
        results = r.opt_obj(summary.get("results"), "results") or {}
        accepted = r.count(results.get("shares_good"), "results.shares_good")
        shares_total = r.count(results.get("shares_total"), "results.shares_total")
        if accepted is not None and shares_total is not None and shares_total >= accepted:
            rejected = shares_total - accepted
        if not devices:
            devices = _legacy_health(summary, r)
    return MinerReading(
        miner=MINER,
        version=version,
        algorithm=algorithm,
        total_hashrate_hs=total,
        accepted_shares=accepted,
        rejected_shares=rejected,
        power_w=sum_known([device.power_w for device in devices]),
        devices=tuple(devices),
    )


def _window(value: object, where: str, r: Reader) -> float | None:
    """First filled window of a ``[10s, 60s, 15m]`` array; a bare number is taken as is."""
    if not isinstance(value, list):
        return r.hashrate(value, where)
    for position, item in enumerate(value):
        rate = r.hashrate(item, f"{where}[{position}]")
        if rate is not None:
            return rate
    return None


def _from_backends(
    backends: list[object], r: Reader
) -> tuple[list[DeviceReading], float | None, str | None]:
    by_index: dict[int, DeviceReading] = {}
    totals: list[float | None] = []
    algorithm: str | None = None
    for b_pos, item in enumerate(backends):
        backend = r.obj(item, f"backends[{b_pos}]")
        if backend.get("enabled") is not True:
            continue
        totals.append(_window(backend.get("hashrate"), f"backends[{b_pos}].hashrate", r))
        algorithm = algorithm or r.text(backend.get("algo"), f"backends[{b_pos}].algo")
        if backend.get("type") not in _GPU_BACKENDS:
            continue
        for t_pos, thread_item in enumerate(r.opt_arr(backend.get("threads"), "threads")):
            where = f"backends[{b_pos}].threads[{t_pos}]"
            thread = r.obj(thread_item, where)
            device = _thread_device(thread, where, r)
            known = by_index.get(device.index)
            if known is not None:
                device = _merge(known, device)
            by_index[device.index] = device
    return [by_index[key] for key in sorted(by_index)], sum_known(totals), algorithm


def _thread_device(thread: JsonObject, where: str, r: Reader) -> DeviceReading:
    health = r.opt_obj(thread.get("health"), f"{where}.health") or {}
    fan = health.get("fan_speed")
    if isinstance(fan, list):
        fan = fan[0] if fan else None
    return DeviceReading(
        index=r.index(thread.get("index"), f"{where}.index"),
        pci_bus_id=r.pci_from_text(thread.get("bus_id"), f"{where}.bus_id", short_form_base=16),
        hashrate_hs=_window(thread.get("hashrate"), f"{where}.hashrate", r),
        power_w=r.power_w(health.get("power"), f"{where}.health.power"),
        temperature_c=r.temperature_c(health.get("temperature"), f"{where}.health.temperature"),
        fan_pct=r.fan_pct(fan, f"{where}.health.fan_speed"),
        name=r.text(thread.get("name"), f"{where}.name"),
    )


def _merge(first: DeviceReading, second: DeviceReading) -> DeviceReading:
    """Two threads on one GPU: hashrates add up, the sensors are the same GPU's."""
    return DeviceReading(
        index=first.index,
        pci_bus_id=first.pci_bus_id or second.pci_bus_id,
        hashrate_hs=sum_known([first.hashrate_hs, second.hashrate_hs]),
        power_w=first.power_w if first.power_w is not None else second.power_w,
        temperature_c=first.temperature_c
        if first.temperature_c is not None
        else second.temperature_c,
        fan_pct=first.fan_pct if first.fan_pct is not None else second.fan_pct,
        name=first.name or second.name,
    )


def _legacy_health(summary: Mapping[str, object], r: Reader) -> list[DeviceReading]:
    devices = []
    for position, item in enumerate(r.opt_arr(summary.get("health"), "health")):
        where = f"health[{position}]"
        gpu = r.obj(item, where)
        devices.append(
            DeviceReading(
                index=position,
                power_w=r.power_w(gpu.get("power"), f"{where}.power"),
                temperature_c=r.temperature_c(gpu.get("temp"), f"{where}.temp"),
                fan_pct=r.fan_pct(gpu.get("fan"), f"{where}.fan"),
                name=r.text(gpu.get("name"), f"{where}.name"),
            )
        )
    return devices
