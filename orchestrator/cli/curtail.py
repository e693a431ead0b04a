"""`orchestrator curtail list|add|cancel`: curtailment windows through serve's API.

A window is "site cap X kW from T1 to T2"; serve stores it, plans against it from shortly
before its start and forecasts, when it is declared, any reserved contract it cannot keep
(docs/runbook.md, "Curtailment and demand response"). Times are ISO 8601 with an offset (or
"now"), durations like 30m or 1h30m; bad input exits 2 before serve is asked.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from orchestrator.cli.client import (
    EXIT_FAILURE,
    EXIT_OK,
    call_api,
    read_api,
    token_arguments,
)


def _cap_kw(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of kW, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more kW, got {text}")
    return value


def _when(text: str) -> float | None:
    """WHEN: "now" (None: serve's clock decides) or an ISO 8601 time with its UTC offset."""
    if text.strip().lower() == "now":
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time with offset (2026-12-05T14:00+01:00) or 'now', got {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset: add one (+01:00, Z) so that it names one instant"
        )
    return moment.timestamp()


def _end_when(text: str) -> float:
    """The end's WHEN: a time with offset; "now" would end the window before it starts."""
    end_s = _when(text)
    if end_s is None:
        raise argparse.ArgumentTypeError("a window cannot end now: give a later time or --duration")
    return end_s


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration_s(text: str) -> float:
    """DURATION: 90s, 30m, 2h, 1h30m, 1d."""
    compact = text.strip().lower()
    if not compact or _DURATION_PART.sub("", compact):
        raise argparse.ArgumentTypeError(f"expected a duration like 30m, 2h or 1h30m, got {text!r}")
    seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(compact))
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0, got {text!r}")
    return seconds


def add_curtail_parser(commands: Any) -> None:
    curtail = commands.add_parser("curtail", help="curtailment windows (site power caps)")
    actions = curtail.add_subparsers(dest="curtail_command", required=True)
    listing = actions.add_parser("list", help="the windows and the cap in force")
    add = actions.add_parser(
        "add",
        help="declare a window (operator token)",
        description="WHEN: ISO 8601 with offset, or now",
    )
    add.add_argument("--cap-kw", type=_cap_kw, required=True, help="the site cap, kW at the wall")
    add.add_argument("--start", type=_when, default=None, metavar="WHEN", help="default: now")
    ends = add.add_mutually_exclusive_group(required=True)
    ends.add_argument("--end", type=_end_when, metavar="WHEN")
    ends.add_argument("--duration", type=_duration_s, metavar="DURATION", help="30m, 2h, 1h30m")
    add.add_argument("--reason", required=True, help="why (goes to the audit log)")
    cancel = actions.add_parser("cancel", help="cancel a window (operator token)")
    cancel.add_argument("id", help="the window's id (`orchestrator curtail list`)")
    for action in (listing, add, cancel):
        action.add_argument("--url", default="http://127.0.0.1:9850")
        action.add_argument("--json", action="store_true", help="print the raw JSON")
        token_arguments(action)


def _local_and_utc(at_s: float) -> str:
    """`2026-12-05 01:00 CET (00:00 UTC)`: the operator's clock, and the utility's (its date
    too when the two differ)."""
    local = datetime.fromtimestamp(at_s).astimezone()
    utc = datetime.fromtimestamp(at_s, UTC)
    same_day = local.date() == utc.date()
    return (
        f"{local:%Y-%m-%d %H:%M} {local.tzname()} "
        f"({'' if same_day else f'{utc:%Y-%m-%d} '}{utc:%H:%M} UTC)"
    )


def _forecast_lines(forecast: dict[str, Any] | None) -> list[str]:
    """The window's forecast: ok, not checked, or one WARNING line per reserved contract
    it cannot keep whole."""
    if not forecast or forecast.get("checked_at_s") is None:
        note = (forecast or {}).get("note") or "not checked yet"
        return [f"forecast: {note}"]
    if forecast.get("ok"):
        return ["forecast: ok, every reserved contract kept whole"]
    lines = [
        f"WARNING: at this cap reserved contract {s['contract']} cannot be kept whole: "
        f"{s['assigned_gpus']}/{s['committed_gpus']} GPUs, {s['shortfall_gpus']} short "
        f"(penalty {s['penalty_usd_per_hour']:.2f} $/h)"
        for s in forecast.get("shortfalls") or []
    ]
    return lines or ["WARNING: the forecast says a reserved contract cannot be kept whole"]


def _window_lines(window: dict[str, Any]) -> list[str]:
    cancelled = f" by {window['cancelled_by']}" if window.get("cancelled_by") else ""
    return [
        (
            f"{window['id']}  {window['state']}{cancelled}  cap {window['cap_kw']:g} kW  "
            f"source {window['source']}  reason: {window['reason']}"
        ),
        f"  from {_local_and_utc(window['start_s'])}",
        f"  to   {_local_and_utc(window['end_s'])}",
        *(f"  {line}" for line in _forecast_lines(window.get("forecast"))),
    ]


def _curtailments_url(args: argparse.Namespace) -> str:
    url: str = args.url
    return url.rstrip("/") + "/api/v1/curtailments"


def cmd_curtail(args: argparse.Namespace) -> int:
    action: Callable[[argparse.Namespace], int] = {
        "list": _curtail_list,
        "add": _curtail_add,
        "cancel": _curtail_cancel,
    }[args.curtail_command]
    return action(args)


def _curtail_list(args: argparse.Namespace) -> int:
    listed = read_api(_curtailments_url(args), args)
    if listed is None:
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(listed, indent=2))
        return EXIT_OK
    cap_kw = listed.get("effective_cap_kw")
    configured_kw = listed.get("configured_cap_kw")
    configured = "none" if configured_kw is None else f"{configured_kw:g} kW"
    in_force = "no cap" if cap_kw is None else f"{cap_kw:g} kW"
    print(f"cap in force: {in_force} (configured: {configured})")
    windows = listed.get("windows") or []
    if not windows:
        print("no curtailment windows")
    for window in windows:
        for line in _window_lines(window):
            print(line)
    return EXIT_OK


def _curtail_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"cap_kw": args.cap_kw, "reason": args.reason}
    if args.start is not None:
        body["start_s"] = args.start
    if args.end is not None:
        body["end_s"] = args.end
    else:
        body["duration_s"] = args.duration
    created = call_api("POST", _curtailments_url(args), args, body, expect=201)
    if created is None:
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(created, indent=2))
        return EXIT_OK
    print("created:")
    for line in _window_lines(created):
        print(line)
    return EXIT_OK


def _curtail_cancel(args: argparse.Namespace) -> int:
    url = f"{_curtailments_url(args)}/{urllib.parse.quote(args.id, safe='')}"
    answer = call_api("DELETE", url, args)
    if answer is None:
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(f"cancelled {answer.get('cancelled', args.id)}")
    return EXIT_OK
