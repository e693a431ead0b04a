"""SRBMiner-MULTI (and its predecessor SRBMiner-CN): JSON at ``GET /`` on ``--api-port``
(default 21550).

Three shapes, told apart by their keys; hashrates are H/s throughout:

* MULTI 0.5+ / 2.x -- ``algorithms[]``, each with ``name``, ``shares{accepted, rejected}`` and
  ``hashrate{now, ..., gpu{gpu0.., total}, cpu{..., total}}``; devices in ``gpu_devices[]``
  (``id``/``device_id``, ``bus_id`` as a decimal bus number, ``model``, ``temperature``, and in
  2.x ``asic_power`` in W). The first algorithm is reported. The 2.x device fields come from a
  third-party parser, not a published sample.
* MULTI 0.1.x -- ``gpu_hashrate[{"GPU0": H/s, ..., "total": H/s}]`` next to ``gpu_devices[]``.
  One published capture lists fewer ``gpu_devices`` than ``GPUn`` keys, so devices are the union
  of both lists (a device without details still has its hashrate).
* SRBMiner-CN 1.x -- ``devices[]`` with an inline ``hashrate`` and ``bus_id``,
  ``hashrate_total_now``, top-level ``shares``, ``cryptonight_type`` as the algorithm.

The total is the miner's own figure (``hashrate.now`` / ``gpu_hashrate.total`` /
``hashrate_total_now``), else the sum of devices. ``fan_speed_rpm`` is RPM, not percent, so it is
not reported as `fan_pct`.
"""

from __future__ import annotations

import re

from orchestrator.agents.miners._values import JsonObject, Payload, Reader, load
from orchestrator.agents.miners.reading import DeviceReading, MinerReading, sum_known

MINER = "srbminer"
_GPU_KEY = re.compile(r"^gpu([0-9]{1,4})$", re.IGNORECASE)


def parse_srbminer(payload: Payload) -> MinerReading:
    """SRBMiner-MULTI / SRBMiner-CN root JSON -> `MinerReading`."""
    r = Reader(MINER)
    doc = r.obj(load(payload, miner=MINER), "root")
    if "algorithms" in doc:
        return _parse_algorithms(doc, r)
    if "gpu_hashrate" in doc:
        return _parse_gpu_hashrate(doc, r)
    if "devices" in doc:
        return _parse_cn(doc, r)
    raise r.error("wrong_shape", "none of algorithms, gpu_hashrate or devices present")


def _rates_by_index(rates: JsonObject, where: str, r: Reader) -> dict[int, float | None]:
    """``{"gpu0": 1.0, "GPU1": 2.0, "total": 3.0}`` -> ``{0: 1.0, 1: 2.0}``."""
    result: dict[int, float | None] = {}
    for key, value in rates.items():
        match = _GPU_KEY.match(key)
        if match is not None:
            result[int(match.group(1))] = r.hashrate(value, f"{where}.{key}")
    return result


def _devices(
    gpu_devices: list[object], rates: dict[int, float | None], r: Reader
) -> list[DeviceReading]:
    by_index: dict[int, DeviceReading] = {}
    for position, item in enumerate(gpu_devices):
        where = f"gpu_devices[{position}]"
        gpu = r.obj(item, where)
        index = r.index(gpu.get("id", gpu.get("device_id", position)), f"{where}.id")
        by_index[index] = _device(gpu, index, rates.get(index), where, r)
    for index, rate in rates.items():
        if index not in by_index:
            by_index[index] = DeviceReading(index=index, hashrate_hs=rate)
    return [by_index[key] for key in sorted(by_index)]


def _device(
    gpu: JsonObject, index: int, rate: float | None, where: str, r: Reader
) -> DeviceReading:
    power = gpu.get("asic_power", gpu.get("power"))
    return DeviceReading(
        index=index,
        pci_bus_id=r.pci_from_text(gpu.get("bus_id"), f"{where}.bus_id", short_form_base=10),
        hashrate_hs=rate,
        power_w=r.power_w(power, f"{where}.asic_power"),
        temperature_c=r.temperature_c(gpu.get("temperature"), f"{where}.temperature"),
        name=r.text(gpu.get("model"), f"{where}.model"),
    )


def _parse_algorithms(doc: JsonObject, r: Reader) -> MinerReading:
    algorithms = r.arr(doc.get("algorithms"), "algorithms")
    algo: JsonObject = r.obj(algorithms[0], "algorithms[0]") if algorithms else {}
    hashrate = r.opt_obj(algo.get("hashrate"), "algorithms[0].hashrate") or {}
    gpu_rates = r.opt_obj(hashrate.get("gpu"), "hashrate.gpu") or {}
    cpu_rates = r.opt_obj(hashrate.get("cpu"), "hashrate.cpu") or {}
    devices = _devices(
        r.opt_arr(doc.get("gpu_devices"), "gpu_devices"),
        _rates_by_index(gpu_rates, "hashrate.gpu", r),
        r,
    )
    total = r.hashrate(hashrate.get("now"), "hashrate.now")
    if total is None:
        total = sum_known(
            [
                r.hashrate(gpu_rates.get("total"), "hashrate.gpu.total"),
                r.hashrate(cpu_rates.get("total"), "hashrate.cpu.total"),
            ]
        )
    shares = r.opt_obj(algo.get("shares"), "algorithms[0].shares") or {}
    return _reading(
        doc,
        r,
        algorithm=r.text(algo.get("name"), "algorithms[0].name"),
        total=total,
        shares=shares,
        devices=devices,
    )


def _parse_gpu_hashrate(doc: JsonObject, r: Reader) -> MinerReading:
    entries = r.arr(doc.get("gpu_hashrate"), "gpu_hashrate")
    rates: JsonObject = r.obj(entries[0], "gpu_hashrate[0]") if entries else {}
    devices = _devices(
        r.opt_arr(doc.get("gpu_devices"), "gpu_devices"),
        _rates_by_index(rates, "gpu_hashrate[0]", r),
        r,
    )
    total = r.hashrate(rates.get("total"), "gpu_hashrate[0].total")
    if total is None:
        total = r.hashrate(doc.get("hashrate_total_now"), "hashrate_total_now")
    shares = r.opt_obj(doc.get("shares"), "shares") or {}
    return _reading(
        doc,
        r,
        algorithm=r.text(doc.get("algorithm"), "algorithm"),
        total=total,
        shares=shares,
        devices=devices,
    )


def _parse_cn(doc: JsonObject, r: Reader) -> MinerReading:
    devices = []
    for position, item in enumerate(r.arr(doc.get("devices"), "devices")):
        where = f"devices[{position}]"
        gpu = r.obj(item, where)
        index = r.index(gpu.get("device_id", position), f"{where}.device_id")
        rate = r.hashrate(gpu.get("hashrate"), f"{where}.hashrate")
        devices.append(_device(gpu, index, rate, where, r))
    total = r.hashrate(doc.get("hashrate_total_now"), "hashrate_total_now")
    shares = r.opt_obj(doc.get("shares"), "shares") or {}
    return _reading(
        doc,
        r,
        algorithm=r.text(doc.get("cryptonight_type"), "cryptonight_type"),
        total=total,
        shares=shares,
        devices=devices,
    )


def _reading(
    doc: JsonObject,
    r: Reader,
    *,
    algorithm: str | None,
    total: float | None,
    shares: JsonObject,
    devices: list[DeviceReading],
) -> MinerReading:
    return MinerReading(
        miner=MINER,
        version=r.text(doc.get("miner_version"), "miner_version"),
        algorithm=algorithm,
        total_hashrate_hs=total
        if total is not None
        else sum_known([device.hashrate_hs for device in devices]),
        accepted_shares=r.count(shares.get("accepted"), "shares.accepted"),
        rejected_shares=r.count(shares.get("rejected"), "shares.rejected"),
        power_w=sum_known([device.power_w for device in devices]),
        devices=tuple(devices),
    )
