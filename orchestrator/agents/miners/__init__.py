"""Miner API readers: what each mining program says about its GPUs, normalised.

Offers `read_miner` (live HTTP/TCP API or a saved file, bounded by a timeout), `parse_miner`
(bytes in hand), `MINER_APIS` (the supported names), the immutable `MinerReading` /
`DeviceReading` values (H/s, W, degrees C, NVML-form PCI bus ids), and `MinerApiError`, the one
exception anything here raises on bad input or an unreachable miner. The per-miner parsers are
pure functions in their own modules; `fetch` holds the only I/O.
"""

from orchestrator.agents.miners.errors import (
    MinerApiError,
    MinerUnreachableError,
)
from orchestrator.agents.miners.gminer import parse_gminer
from orchestrator.agents.miners.lolminer import parse_lolminer
from orchestrator.agents.miners.nbminer import parse_nbminer
from orchestrator.agents.miners.reading import DeviceReading, MinerReading
from orchestrator.agents.miners.registry import (
    MINER_API_TABLE,
    MINER_APIS,
    MinerApi,
    parse_miner,
    read_miner,
    reading_json,
)
from orchestrator.agents.miners.rigel import parse_rigel
from orchestrator.agents.miners.srbminer import parse_srbminer
from orchestrator.agents.miners.teamredminer import parse_teamredminer
from orchestrator.agents.miners.trex import parse_trex
from orchestrator.agents.miners.xmrig import parse_xmrig

__all__ = [
    "MINER_APIS",
    "MINER_API_TABLE",
    "DeviceReading",
    "MinerApi",
    "MinerApiError",
    "MinerReading",
    "MinerUnreachableError",
    "parse_gminer",
    "parse_lolminer",
    "parse_miner",
    "parse_nbminer",
    "parse_rigel",
    "parse_srbminer",
    "parse_teamredminer",
    "parse_trex",
    "parse_xmrig",
    "read_miner",
    "reading_json",
]
