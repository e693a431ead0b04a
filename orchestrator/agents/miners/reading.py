"""What one look at a miner's API says, in units the rest of the orchestrator can trust.

A `MinerReading` is the normalised form of any supported miner's stats document: hashrate
always in H/s (base unit per second of the algorithm), power in W, temperature in degrees C,
fan in percent, share counters as ints, and every GPU keyed by its PCI bus id in NVML's
``00000000:01:00.0`` form. The miner's own device ordinal (`index`) is kept for display only:
miners number devices in their own order (CUDA order, a user's ``-d`` list, or AMD and NVIDIA
mixed in one list), so joining on it would attach hashrates to the wrong GPU.

``None`` always means "the miner did not say" (old API versions, warm-up, no sensor). It never
means zero: a watchdog must be able to tell "warming up" from "hashing at 0 H/s".

Readings are immutable values; `to_json_dict` gives the CLI's documented JSON shape
(``miner, algorithm, total_hashrate_hs, devices[{index, pci_bus_id, hashrate_hs, accepted,
rejected, power_w, temperature_c}]``) plus a few extra keys.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceReading:
    """One GPU (or other device) as the miner reports it."""

    index: int
    pci_bus_id: str | None = None
    hashrate_hs: float | None = None
    accepted_shares: int | None = None
    rejected_shares: int | None = None
    power_w: float | None = None
    temperature_c: float | None = None
    fan_pct: float | None = None
    name: str | None = None
    uuid: str | None = None

    def to_json_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "pci_bus_id": self.pci_bus_id,
            "hashrate_hs": self.hashrate_hs,
            "accepted": self.accepted_shares,
            "rejected": self.rejected_shares,
            "power_w": self.power_w,
            "temperature_c": self.temperature_c,
            "fan_pct": self.fan_pct,
            "name": self.name,
            "uuid": self.uuid,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MinerReading:
    """A whole miner: totals plus one `DeviceReading` per device it reports."""

    miner: str
    version: str | None = None
    algorithm: str | None = None
    total_hashrate_hs: float | None = None
    accepted_shares: int | None = None
    rejected_shares: int | None = None
    power_w: float | None = None
    devices: tuple[DeviceReading, ...] = ()

    def device_by_pci_bus_id(self, pci_bus_id: str | bytes) -> DeviceReading | None:
        """The device on NVML's `busId` (str or the bytes pynvml returns), if the miner has it."""
        wanted = pci_bus_id.decode() if isinstance(pci_bus_id, bytes) else pci_bus_id
        wanted = wanted.strip().upper()
        for device in self.devices:
            if device.pci_bus_id is not None and device.pci_bus_id == wanted:
                return device
        return None

    def to_json_dict(self) -> dict[str, object]:
        return {
            "miner": self.miner,
            "version": self.version,
            "algorithm": self.algorithm,
            "total_hashrate_hs": self.total_hashrate_hs,
            "accepted": self.accepted_shares,
            "rejected": self.rejected_shares,
            "power_w": self.power_w,
            "devices": [device.to_json_dict() for device in self.devices],
        }


def sum_known(values: list[float | None]) -> float | None:
    """Sum of the values that are known; None when none is."""
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def sum_counts(values: list[int | None]) -> int | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None
