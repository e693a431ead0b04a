"""T-Rex (NVIDIA): ``GET /summary`` on the HTTP API (default 127.0.0.1:4067).

Consumes the summary JSON of every API version seen in the wild and produces a `MinerReading`.
Hashrates are integers in H/s in all versions (``hashrate`` is the miner's sliding-window
average, the one its own console prints). What changed between versions:

* API 1.0 (0.5.x): per GPU only ``device_id``/``gpu_id``/``hashrate``/``intensity``.
* API 1.1+ (0.6.x): adds ``power`` (W), ``temperature`` (C), ``fan_speed`` (%).
* 0.19.x: per-GPU shares in a top-level ``stat_by_gpu[]`` parallel to ``gpus[]``.
* 0.2x: per-GPU shares moved into ``gpus[].shares``; ``pci_bus`` (decimal), ``pci_domain``,
  ``pci_id`` (PCI device number) and ``uuid`` (32 hex digits, no ``GPU-`` prefix) appear.

Before 0.2x T-Rex gives no bus id, so such devices carry ``pci_bus_id=None`` and the caller can
only join them by other means. ``device_id`` is the CUDA ordinal (not the NVML one).

The old ccminer-style TCP API (``summary`` command, ``NAME=t-rex;...;KHS=5798.28;...|``) is also
accepted when handed over as text, for completeness; it has totals only.
"""

from __future__ import annotations

import re

from orchestrator.agents.miners._values import Payload, Reader, load
from orchestrator.agents.miners.reading import DeviceReading, MinerReading, sum_known

MINER = "trex"

_UUID_HEX = re.compile(
    r"^(?:GPU-)?([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?"
    r"([0-9a-fA-F]{4})-?([0-9a-fA-F]{12})$"
)


def parse_trex(payload: Payload) -> MinerReading:
    """T-Rex ``/summary`` JSON (any API version), or ccminer-API text -> `MinerReading`."""
    r = Reader(MINER)
    if isinstance(payload, bytes | bytearray) and payload.lstrip()[:5] == b"NAME=":
        return _parse_ccminer_text(payload.decode("utf-8", errors="replace"), r)
    if isinstance(payload, str) and payload.lstrip().startswith("NAME="):
        return _parse_ccminer_text(payload, r)
    doc = r.obj(load(payload, miner=MINER), "summary")
    gpus = r.opt_arr(doc.get("gpus"), "gpus")
    stat_by_gpu = r.opt_arr(doc.get("stat_by_gpu"), "stat_by_gpu")
    devices = []
    for position, item in enumerate(gpus):
        where = f"gpus[{position}]"
        gpu = r.obj(item, where)
        shares_raw = gpu.get("shares")
        if shares_raw is None and position < len(stat_by_gpu):
            shares_raw = stat_by_gpu[position]
        shares = r.opt_obj(shares_raw, f"{where}.shares") or {}
        ordinal = gpu.get("device_id", gpu.get("gpu_id", position))
        devices.append(
            DeviceReading(
                index=r.index(ordinal, f"{where}.device_id"),
                pci_bus_id=r.pci_from_int(
                    gpu.get("pci_bus"),
                    f"{where}.pci_bus",
                    domain=gpu.get("pci_domain"),
                    device=gpu.get("pci_id"),
                ),
                hashrate_hs=r.hashrate(gpu.get("hashrate"), f"{where}.hashrate"),
                accepted_shares=r.count(shares.get("accepted_count"), f"{where} accepted"),
                rejected_shares=r.count(shares.get("rejected_count"), f"{where} rejected"),
                power_w=r.power_w(gpu.get("power"), f"{where}.power"),
                temperature_c=r.temperature_c(gpu.get("temperature"), f"{where}.temperature"),
                fan_pct=r.fan_pct(gpu.get("fan_speed"), f"{where}.fan_speed"),
                name=r.text(gpu.get("name"), f"{where}.name"),
                uuid=_nvml_uuid(r.text(gpu.get("uuid"), f"{where}.uuid")),
            )
        )
    total = r.hashrate(doc.get("hashrate"), "hashrate")
    if total is None:
        total = sum_known([device.hashrate_hs for device in devices])
    return MinerReading(
        miner=MINER,
        version=r.text(doc.get("version"), "version"),
        algorithm=r.text(doc.get("algorithm"), "algorithm"),
        total_hashrate_hs=total,
        accepted_shares=r.count(doc.get("accepted_count"), "accepted_count"),
        rejected_shares=r.count(doc.get("rejected_count"), "rejected_count"),
        power_w=sum_known([device.power_w for device in devices]),
        devices=tuple(devices),
    )


def _nvml_uuid(value: str | None) -> str | None:
    """T-Rex's compact 32-hex uuid -> NVML's ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``."""
    if value is None:
        return None
    match = _UUID_HEX.match(value)
    if match is None:
        return None
    return "GPU-" + "-".join(part.lower() for part in match.groups())


def _parse_ccminer_text(text: str, r: Reader) -> MinerReading:
    section = text.strip().strip("\x00").split("|", 1)[0]
    fields: dict[str, str] = {}
    for pair in section.split(";"):
        key, sep, value = pair.partition("=")
        if not sep:
            raise r.error("wrong_shape", f"ccminer summary field {pair[:40]!r} has no '='")
        fields[key.strip().upper()] = value.strip()
    if "KHS" not in fields:
        raise r.error("wrong_shape", "ccminer summary has no KHS field")
    return MinerReading(
        miner=MINER,
        version=fields.get("VER") or None,
        algorithm=fields.get("ALGO") or None,
        total_hashrate_hs=r.hashrate(fields["KHS"], "KHS", factor=1e3),
        accepted_shares=r.count(fields.get("ACC"), "ACC"),
        rejected_shares=r.count(fields.get("REJ"), "REJ"),
    )
