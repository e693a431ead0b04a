"""structlog, configured once per process.

JSON lines when stdout is not a terminal (journald, files), a readable console otherwise.
Context such as `node`, `gpu` and `command_id` is bound through contextvars, so a line
written deep in a driver still says which GPU it concerns. Standard-library logging from
libraries goes through the same renderer.

JSON has no NaN or infinity, and Python's `json` writes them as bare `NaN`/`Infinity`, which
`jq` and log shippers refuse. A rejected price is exactly such a value, so before rendering,
every non-finite float in an event (nested in dicts, lists and tuples too) becomes the string
`"NaN"`, `"Infinity"` or `"-Infinity"`: the line stays valid JSON and still says what came in.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def non_finite_as_strings(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: NaN and infinities, anywhere in the event, as strings."""
    for key, value in event_dict.items():
        if isinstance(value, float | dict | list | tuple):
            event_dict[key] = _finite(value)
    return event_dict


def configure_logging(*, level: str = "info", fmt: LogFormat = "auto") -> None:
    numeric = logging.getLevelNamesMapping()[level.upper()]
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            non_finite_as_strings,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                non_finite_as_strings,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO) if numeric < logging.INFO else numeric)
    # library chatter stays out of info level
    for noisy in ("aiohttp.access", "amqtt", "transitions", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
