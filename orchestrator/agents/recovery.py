"""Recovery at agent start: re-attach to what runs before the first command is read.

Restart-safe by construction (STYLE point 11): the agent reads its state directory and asks
each driver to `recover` the persisted handle of every GPU *before* it subscribes to commands,
and never reads "nothing observed yet" as "stop everything". Per GPU:

- a persisted handle the driver recovers: the workload runs on, re-attached, not restarted;
- a handle the driver says is gone (it ended while the agent was away): the GPU is recorded
  idle but keeps its desired workload, so the watchdog starts it again (with its backoff);
- a driver that cannot tell now (dockerd not answering): the handle is kept as it was and
  the workload reported as recorded; the watchdog sees "unknown" and does nothing to it;
- a command that was in progress when the agent went down (`intent`) is not resumed: it is
  recorded `failed` ("agent restarted during <step>") with what the GPU runs after
  recovery, so a replay of it gets that answer, and the event is handed back to be
  published (`interrupted`): the central dispatcher ends the command at once rather than at
  its timeout, and issues a new one if it still wants the switch;
- no record at all (first start): adopt what runs. Drivers that can list their workloads
  (`Discoverable`: container labels, process markers) are asked once; on a simulated node the
  fake GPU's workload is adopted through the sim driver when a declared sim profile runs it;
  on real GPUs with nothing found, a GPU that NVML shows free is idle and any other is
  unknown (reported as such, never killed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from orchestrator.agents.gpu import GpuBackend, WorkloadSettable
from orchestrator.agents.state import GpuRecord, ReportOrder, StateStore
from orchestrator.agents.switching import GpuSlot, StepError, Switcher
from orchestrator.config.profiles import ProfileSection, UnknownProfileError, profile_for_workload
from orchestrator.domain import IDLE
from orchestrator.drivers import Discoverable, GpuRef, Handle, HandleError
from orchestrator.errors import OrchestratorError, TemporaryError
from orchestrator.protocol import INTERRUPTED_BY_RESTART, GpuTelemetry, SwitchEvent

log = structlog.get_logger(__name__)

_RECOVER_TIMEOUT_S = 20.0
_FREE_MEMORY_BYTES = 1024 * 1024 * 1024


async def recover_slots(
    *,
    node: str,
    backend: GpuBackend,
    store: StateStore,
    switcher: Switcher,
    profiles: Sequence[ProfileSection],
    remembered_results_per_gpu: int,
    clock: Callable[[], float] = time.time,
    order: ReportOrder | None = None,
    interrupted: list[SwitchEvent] | None = None,
) -> dict[int, GpuSlot]:
    """One slot per GPU the backend lists, re-attached to what runs; every record persisted.

    The final events of commands a restart interrupted are appended to `interrupted`,
    numbered by `order`, for the caller to publish."""
    sample = await asyncio.to_thread(backend.sample)
    records = {gpu.index: store.load_gpu(gpu.index) for gpu in sample}
    discovered: dict[int, Handle] = {}
    if any(record is None or record.handle is None for record in records.values()):
        discovered = await _discover(node, switcher, profiles)
    slots: dict[int, GpuSlot] = {}
    for gpu in sample:
        ref = GpuRef(gpu.index, gpu.uuid or "", gpu.pci_bus_id or "")
        record = records[gpu.index]
        if record is None:
            slot = await _adopt(GpuSlot(ref, GpuRecord(gpu.index)), gpu, discovered, switcher)
        else:
            slot = GpuSlot(ref, record)
            intent = record.intent
            record.intent = None
            await _reattach(slot, discovered, switcher)
            event = _fail_interrupted(slot, intent, node, clock, order)
            if event is not None:
                record.remember(
                    event.model_dump(by_alias=True, mode="json"), keep=remembered_results_per_gpu
                )
                if interrupted is not None:
                    interrupted.append(event)
        await store.save_gpu(slot.record)
        slots[gpu.index] = slot
        log.debug(
            "gpu recovered",
            gpu=gpu.index,
            workload=slot.record.workload,
            handle=slot.handle.ref if slot.handle else None,
            quarantined=slot.record.quarantine_reason,
        )
    workloads: dict[str, int] = {}
    for slot in slots.values():
        name = slot.record.workload or "unknown"
        workloads[name] = workloads.get(name, 0) + 1
    attached = sum(1 for slot in slots.values() if slot.handle is not None)
    quarantined = sum(1 for slot in slots.values() if slot.record.quarantined)
    log.info(
        "gpus recovered",
        node=node,
        gpus=len(slots),
        attached=attached,
        quarantined=quarantined,
        workloads=workloads,
    )
    return slots


def _fail_interrupted(
    slot: GpuSlot,
    intent: dict[str, Any] | None,
    node: str,
    clock: Callable[[], float],
    order: ReportOrder | None,
) -> SwitchEvent | None:
    """The `failed` event of a command the restart interrupted (after re-attaching: it says
    what the GPU runs now), or None."""
    if intent is None:
        return None
    try:
        event = SwitchEvent(
            command_id=str(intent["command_id"]),
            generation=int(intent["generation"]),
            node=node,
            gpu_index=slot.gpu.index,
            workload=str(intent["workload"]),
            state="failed",
            step=str(intent.get("step") or "accepted")[:32],
            reason=f"{INTERRUPTED_BY_RESTART} {intent.get('step')!r}; not resumed",
            at_s=clock(),
            seq=order.next() if order is not None else None,
            boot_s=order.boot_s if order is not None else None,
            actual=slot.record.workload,
            actual_since_s=slot.record.since_s,
        )
    except (KeyError, ValueError, TypeError) as error:
        log.warning("unreadable interrupted command dropped", gpu=slot.gpu.index, error=str(error))
        return None
    log.warning("command interrupted by a restart recorded failed", command_id=event.command_id)
    return event


async def _reattach(slot: GpuSlot, discovered: dict[int, Handle], switcher: Switcher) -> None:
    record = slot.record
    if record.handle is None:
        orphan = discovered.get(slot.gpu.index)
        if orphan is not None:  # started, but the agent died before persisting its handle
            _adopt_handle(slot, orphan)
        return
    try:
        handle = Handle.from_json(record.handle)
        driver = switcher.driver_for(handle, switcher.profiles.get(handle.profile_id))
        async with asyncio.timeout(_RECOVER_TIMEOUT_S):
            recovered = await driver.recover(record.handle)
    except HandleError as error:
        log.warning("persisted handle unusable; the workload is treated as gone", error=str(error))
        recovered = None
    except (TimeoutError, TemporaryError, StepError) as error:
        # the driver cannot tell now, or no declared profile uses it any more: keep the
        # handle and report the workload as recorded; nothing is stopped on a guess
        log.warning("workload not re-attached; handle kept", error=str(error))
        slot.handle = Handle.from_json(record.handle)
        return
    if recovered is None:
        log.warning("workload ended while the agent was away", gpu=slot.gpu.index)
        record.handle = None
        record.workload = IDLE  # what runs; desired_workload stays for the watchdog
        record.since_s = None  # when it ended is not known: no dwell is owed to it
        return
    _adopt_handle(slot, recovered)


async def _adopt(
    slot: GpuSlot, gpu: GpuTelemetry, discovered: dict[int, Handle], switcher: Switcher
) -> GpuSlot:
    found = discovered.get(gpu.index)
    if found is not None:
        _adopt_handle(slot, found)
        return slot
    backend = switcher.backend
    if isinstance(backend, WorkloadSettable):
        await _adopt_simulated(slot, backend.workload_of(gpu.index), switcher)
        return slot
    used = gpu.memory_used_bytes
    if not gpu.processes and (used is None or used <= _FREE_MEMORY_BYTES):
        slot.record.workload = IDLE
    else:
        log.warning("GPU busy with a workload this agent did not start", gpu=gpu.index)
        slot.record.workload = None  # unknown: reported as such, never killed
    return slot


async def _adopt_simulated(slot: GpuSlot, workload: str, switcher: Switcher) -> None:
    """A fresh simulated GPU already runs `workload`: re-attach the sim driver to it."""
    slot.record.workload = workload
    if workload == IDLE:
        return
    try:
        profile = profile_for_workload(switcher.profiles.values(), workload)
    except UnknownProfileError:
        log.warning("simulated GPU runs a workload no profile declares", workload=workload)
        return  # reported, not managed
    if profile.driver != "sim":
        return
    synthetic = Handle(
        driver="sim",
        ref=f"sim-{switcher.node}-gpu{slot.gpu.index}-adopted",
        profile_id=profile.id,
        workload_id=workload,
        node=switcher.node,
        gpu_index=slot.gpu.index,
        gpu_uuid=slot.gpu.uuid,
        started_at_s=switcher.clock(),
        details={"kind": profile.kind, "hashrate_hs": profile.sim_hashrate_hs},
    )
    recovered = await switcher.registry.for_profile(profile).recover(synthetic.to_json())
    if recovered is not None:
        _adopt_handle(slot, recovered)


def _adopt_handle(slot: GpuSlot, handle: Handle) -> None:
    record = slot.record
    slot.handle = handle
    record.handle = handle.to_json()
    record.workload = handle.workload_id
    record.profile_id = handle.profile_id
    record.desired_workload = handle.workload_id
    record.since_s = record.since_s or handle.started_at_s


async def _discover(
    node: str, switcher: Switcher, profiles: Sequence[ProfileSection]
) -> dict[int, Handle]:
    """Workloads this node started that the drivers can list, by GPU (first start only)."""
    found: dict[int, Handle] = {}
    seen: set[int] = set()
    for profile in profiles:
        driver = switcher.registry.for_profile(profile)
        if id(driver) in seen or not isinstance(driver, Discoverable):
            continue
        seen.add(id(driver))
        try:
            async with asyncio.timeout(_RECOVER_TIMEOUT_S):
                handles = await driver.discover(node)
        except (TimeoutError, OrchestratorError) as error:
            log.warning("discovery failed", driver=driver.name, error=str(error))
            continue
        for handle in handles:
            found.setdefault(handle.gpu_index, handle)
    return found
