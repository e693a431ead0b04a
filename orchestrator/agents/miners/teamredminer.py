"""TeamRedMiner (AMD): the sgminer-compatible JSON API over raw TCP (default 127.0.0.1:4028).

The client sends ``{"command":"devs"}`` (or ``pools``, ``devdetails``); the miner answers one
JSON document, often NUL-terminated, and closes the connection. Every reply carries
``STATUS[{STATUS, Msg, Description}]``; ``STATUS`` "E"/"F" is an error reply and becomes
``MinerApiError(reason="miner_error")``. ``Description`` (``"TeamRedMiner 0.3.10"``) gives the
version.

``DEVS[]``: ``GPU`` (ordinal), ``Temperature``, ``"Fan Percent"``, ``Accepted``, ``Rejected``, and
the hashrate split over keys whose names vary: a windowed ``"KHS <n>s"``/``"MHS <n>s"`` (the
window is the configured log interval: 30s, 120s, ...) and the session averages
``"KHS av"``/``"MHS av"``. The shortest window wins, kH/s before MH/s (more digits). ``devs``
reports no power.

``POOLS[].Algorithm`` names the algorithm. ``DEVDETAILS[]."Device Path"`` holds the PCI bus id in
hex (TRM documents only "hex format"); any form this package understands is accepted, and a
form it does not is treated as unknown rather than failing the whole reading.

`parse_teamredminer` accepts a single ``devs`` reply, or the sgminer multi-command shape
``{"devs": [reply], "pools": [reply], "devdetails": [reply]}`` (what ``devs+pools+devdetails``
returns, and what the TCP reader assembles from separate requests).
"""

from __future__ import annotations

import re

from orchestrator.agents.miners._values import JsonObject, Payload, Reader, load
from orchestrator.agents.miners.errors import MinerApiError
from orchestrator.agents.miners.reading import (
    DeviceReading,
    MinerReading,
    sum_counts,
    sum_known,
)

MINER = "teamredminer"
_WINDOWED = re.compile(r"^([KMG])HS ([0-9]{1,6})s$")
_PREFIX = {"K": 1e3, "M": 1e6, "G": 1e9}


def parse_teamredminer(payload: Payload) -> MinerReading:
    """TRM ``devs`` reply (alone or with ``pools``/``devdetails``) -> `MinerReading`."""
    r = Reader(MINER)
    doc = r.obj(load(payload, miner=MINER), "reply")
    if "DEVS" in doc:
        devs, pools, details = doc, None, None
    elif "devs" in doc:
        devs = _sub_reply(doc, "devs", r)
        pools = _sub_reply(doc, "pools", r) if "pools" in doc else None
        details = _sub_reply(doc, "devdetails", r) if "devdetails" in doc else None
    else:
        _check_status(doc, r)  # an error reply explains itself
        raise r.error("wrong_shape", "no DEVS in the reply")
    description = _check_status(devs, r)
    paths = _device_paths(details, r) if details is not None else {}
    devices = []
    for position, item in enumerate(r.arr(devs.get("DEVS"), "DEVS")):
        where = f"DEVS[{position}]"
        dev = r.obj(item, where)
        index = r.index(dev.get("GPU", position), f"{where}.GPU")
        devices.append(
            DeviceReading(
                index=index,
                pci_bus_id=paths.get(index),
                hashrate_hs=_device_rate(dev, where, r),
                accepted_shares=r.count(dev.get("Accepted"), f"{where}.Accepted"),
                rejected_shares=r.count(dev.get("Rejected"), f"{where}.Rejected"),
                temperature_c=r.temperature_c(dev.get("Temperature"), f"{where}.Temperature"),
                fan_pct=r.fan_pct(dev.get("Fan Percent"), f"{where}.Fan Percent"),
            )
        )
    version = None
    if description is not None and description.lower().startswith("teamredminer"):
        version = description[len("teamredminer") :].strip() or None
    return MinerReading(
        miner=MINER,
        version=version,
        algorithm=_algorithm(pools, r) if pools is not None else None,
        total_hashrate_hs=sum_known([device.hashrate_hs for device in devices]),
        accepted_shares=sum_counts([device.accepted_shares for device in devices]),
        rejected_shares=sum_counts([device.rejected_shares for device in devices]),
        devices=tuple(devices),
    )


def _sub_reply(doc: JsonObject, command: str, r: Reader) -> JsonObject:
    """sgminer wraps each sub-command's reply in a one-element list."""
    value = doc.get(command)
    if isinstance(value, list):
        if not value:
            raise r.error("wrong_shape", f"{command} reply is empty")
        value = value[0]
    return r.obj(value, f"{command} reply")


def _check_status(reply: JsonObject, r: Reader) -> str | None:
    statuses = r.opt_arr(reply.get("STATUS"), "STATUS")
    if not statuses:
        return None
    status = r.obj(statuses[0], "STATUS[0]")
    if status.get("STATUS") in ("E", "F"):
        message = r.text(status.get("Msg"), "STATUS[0].Msg") or "error reply"
        raise r.error("miner_error", message)
    return r.text(status.get("Description"), "STATUS[0].Description")


def _device_rate(dev: JsonObject, where: str, r: Reader) -> float | None:
    windowed = []
    for key in dev:
        match = _WINDOWED.match(key)
        if match is not None:
            windowed.append((int(match.group(2)), match.group(1) != "K", key, match.group(1)))
    for _, _, key, prefix in sorted(windowed):
        rate = r.hashrate(dev[key], f"{where}.{key}", factor=_PREFIX[prefix])
        if rate is not None:
            return rate
    for key, factor in (("KHS av", 1e3), ("MHS av", 1e6), ("GHS av", 1e9)):
        rate = r.hashrate(dev.get(key), f"{where}.{key}", factor=factor)
        if rate is not None:
            return rate
    return None


def _is_error(reply: JsonObject, r: Reader) -> bool:
    """An optional sub-reply that failed (older versions lack ``devdetails``) adds nothing."""
    try:
        _check_status(reply, r)
    except MinerApiError:
        return True
    return False


def _algorithm(pools: JsonObject, r: Reader) -> str | None:
    if _is_error(pools, r):
        return None
    entries = [r.obj(item, "POOLS[]") for item in r.opt_arr(pools.get("POOLS"), "POOLS")]
    active = [pool for pool in entries if pool.get("Stratum Active") is True] or entries
    return r.text(active[0].get("Algorithm"), "POOLS[].Algorithm") if active else None


def _device_paths(details: JsonObject, r: Reader) -> dict[int, str]:
    if _is_error(details, r):
        return {}
    paths: dict[int, str] = {}
    for position, item in enumerate(r.opt_arr(details.get("DEVDETAILS"), "DEVDETAILS")):
        where = f"DEVDETAILS[{position}]"
        entry = r.obj(item, where)
        ordinal = entry.get("ID", entry.get("GPU", entry.get("DEVDETAILS", position)))
        try:
            path = r.pci_from_text(
                entry.get("Device Path"), f"{where}.Device Path", short_form_base=16
            )
        except MinerApiError:
            path = None
        if path is not None:
            paths[r.index(ordinal, f"{where}.ID")] = path
    return paths
