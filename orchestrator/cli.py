"""The `orchestrator` command line: daemons, the demo, and operators' tools.

Exit codes: 0 success, 1 a runtime failure, 2 bad usage or a bad config (the key and
the reason are printed), 130 interrupted. Daemons run under `asyncio.run` with signal
handlers that only set a stop flag (STYLE point 13).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from orchestrator import __version__
from orchestrator.config import AgentConfig, ServeConfig, load_config
from orchestrator.config.backtest import add_backtest_parser
from orchestrator.config.notices import config_notices
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.lifecycle import install_signal_handlers, tune_garbage_collector
from orchestrator.logs import configure_logging

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10000, got {text}")
    return value


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


def _add_curtail_parser(commands: Any) -> None:
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
        _token_arguments(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the central daemon")
    serve.add_argument("-c", "--config", type=Path, required=True)
    agent = commands.add_parser("agent", help="run a node agent")
    agent.add_argument("-c", "--config", type=Path, required=True)

    demo = commands.add_parser("demo", help="the whole system on this machine, simulated GPUs")
    demo.add_argument("--nodes", type=_count, default=4)
    demo.add_argument("--gpus-per-node", type=_count, default=8)
    demo.add_argument("--duration", type=_positive, default=None, help="seconds, then exit 0")
    demo.add_argument("--http", type=_host_port, default=None, help="API address, HOST:PORT")
    demo.add_argument("--telemetry-interval", type=_positive, default=1.0, help="seconds")
    demo.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto")
    demo.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    config = commands.add_parser("config", help="config files")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a config file")
    check.add_argument("file", type=Path)
    check.add_argument("--kind", choices=["serve", "agent"], default=None)

    miner = commands.add_parser("miner", help="miner APIs")
    miner_commands = miner.add_subparsers(dest="miner_command", required=True)
    read = miner_commands.add_parser("read", help="one miner API reading, normalised, as JSON")
    read.add_argument("--api", required=True, help="trex, lolminer, gminer, xmrig, nbminer, ...")
    source = read.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="the miner's API address, e.g. http://127.0.0.1:4067")
    source.add_argument("--file", type=Path, help="a saved API response")
    read.add_argument("--timeout", type=_positive, default=5.0, help="seconds")

    explain = commands.add_parser("explain", help="why a GPU runs what the plan gives it")
    explain.add_argument("gpu", help="node:index or the GPU's NVML UUID")
    explain.add_argument("--url", default="http://127.0.0.1:9850")
    explain.add_argument("--json", action="store_true", help="print the raw JSON")
    _token_arguments(explain)

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    new = token_commands.add_parser("new", help="make a token and its [[http.tokens]] entry")
    new.add_argument("--name", required=True, help="who holds it (appears in the audit log)")
    new.add_argument("--role", choices=["viewer", "operator"], default="viewer")

    add_backtest_parser(commands)

    status = commands.add_parser("status", help="the fleet as the central daemon sees it")
    status.add_argument("--url", default="http://127.0.0.1:9850")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    _token_arguments(status)

    _add_curtail_parser(commands)
    return parser


TOKEN_ENV = "ORCHESTRATOR_TOKEN"  # noqa: S105  (the variable's name, not a token)


def _token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help=f"a file holding the API token (else ${TOKEN_ENV}; needed when serve has tokens)",
    )


def _api_token(args: argparse.Namespace) -> str | None:
    """The bearer token for `serve`'s API: `--token-file`, else $ORCHESTRATOR_TOKEN, else none.

    Never a command-line value: a token in argv is readable by every user through ps."""
    if args.token_file is not None:
        return args.token_file.read_text(encoding="utf-8").strip() or None
    return os.environ.get(TOKEN_ENV, "").strip() or None


def _run_daemon(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    async def runner() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        await main(stop)

    try:
        asyncio.run(runner())
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


def _log_notices(config: ServeConfig | AgentConfig) -> None:
    """One warning line per notice about a config that loads (`config.notices`)."""
    log = structlog.get_logger("orchestrator.config")
    for key, message in config_notices(config):
        log.warning("config_notice", key=key, detail=message)


def cmd_serve(args: argparse.Namespace) -> int:
    from orchestrator.sdnotify import Notifier  # noqa: PLC0415
    from orchestrator.serve import CentralDaemon  # noqa: PLC0415  (keep `config check` light)

    config = load_config(args.config, "serve")
    configure_logging(level=config.log.level, fmt=config.log.format)
    _log_notices(config)
    notifier = Notifier.from_environment(unset_environment=True)
    daemon = CentralDaemon(config, notifier=notifier)
    tune_garbage_collector()  # after start-up's allocations, which it freezes
    return _run_daemon(daemon.run)


def cmd_agent(args: argparse.Namespace) -> int:
    from orchestrator.agents.agent import NodeAgent  # noqa: PLC0415
    from orchestrator.sdnotify import Notifier  # noqa: PLC0415

    config = load_config(args.config, "agent")
    configure_logging(level=config.log.level, fmt=config.log.format)
    _log_notices(config)
    notifier = Notifier.from_environment(unset_environment=True)
    return _run_daemon(NodeAgent(config, notifier=notifier).run)


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.demo import DemoOptions, run_demo  # noqa: PLC0415

    configure_logging(level=args.log_level, fmt="console")
    host, port = args.http if args.http else ("127.0.0.1", None)
    options = DemoOptions(
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        duration_s=args.duration,
        http_host=host,
        http_port=port,
        telemetry_interval_s=args.telemetry_interval,
        broker=args.broker,
    )
    return _run_daemon(lambda stop: run_demo(options, stop))


def cmd_backtest(args: argparse.Namespace) -> int:
    # imported here: the planner, HiGHS and numpy are for backtests, not the daemons' memory
    from orchestrator.backtest.cli import run_backtest_command  # noqa: PLC0415

    return run_backtest_command(args)


def cmd_config_check(args: argparse.Namespace) -> int:
    from orchestrator.config.policy import contract_problems  # noqa: PLC0415

    config = load_config(args.file, args.kind)
    if isinstance(config, ServeConfig):
        problems = contract_problems(config.contracts)
        if problems:
            raise ConfigError(str(args.file), [("contracts", line) for line in problems])
    kind = "agent" if isinstance(config, AgentConfig) else "serve"
    print(f"{args.file}: valid {kind} config")
    for key, message in config_notices(config):
        print(f"warning: {key}: {message}")
    return EXIT_OK


def cmd_miner_read(args: argparse.Namespace) -> int:
    from orchestrator.agents.miners import MINER_APIS, MinerApiError, read_miner  # noqa: PLC0415

    if args.api not in MINER_APIS:
        print(
            f"error: unknown miner API {args.api!r}; known: {', '.join(MINER_APIS)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        reading = asyncio.run(
            read_miner(args.api, url=args.url, file=args.file, timeout_s=args.timeout)
        )
    except MinerApiError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE if not args.url else EXIT_FAILURE
    print(json.dumps(reading.to_json_dict(), indent=2))
    return EXIT_OK


def _get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    """GET a JSON document; (status, body), or raise OSError when nothing answered."""
    return _send_json("GET", url, token=token)


def _send_json(
    method: str, url: str, body: Any = None, *, token: str | None = None
) -> tuple[int, Any]:
    """One request, with `body` as JSON when given; (status, JSON answer), or raise OSError
    when nothing answered. An error status is an answer, not an exception."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (operator URL)
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.load(error)
        except ValueError:
            return error.code, {"error": error.reason}


def _read_api(url: str, args: argparse.Namespace) -> Any:
    """The JSON body of a 200 answer, or None after saying on stderr why there is none."""
    return _call_api("GET", url, args)


def _call_api(
    method: str, url: str, args: argparse.Namespace, body: Any = None, *, expect: int = 200
) -> Any:
    """The JSON answer when serve answers `expect`; else None, after saying on stderr why:
    the error, each of its `problems`, and what to do about a 401 or a 403."""
    try:
        token = _api_token(args)
    except (OSError, UnicodeDecodeError) as error:
        print(f"cannot read the token file {args.token_file}: {error}", file=sys.stderr)
        return None
    try:
        status, answer = _send_json(method, url, body, token=token)
    except (OSError, ValueError) as error:
        print(f"cannot read {url}: {error}", file=sys.stderr)
        return None
    if status == expect:
        return answer
    said = answer.get("error") if isinstance(answer, dict) else None
    detail = answer.get("detail", "") if isinstance(answer, dict) else ""
    suffix = f": {detail}" if detail else ""
    print(f"error: HTTP {status}: {said or answer}{suffix}", file=sys.stderr)
    problems = answer.get("problems") if isinstance(answer, dict) else None
    for problem in problems or []:
        print(f"  {problem.get('field')}: {problem.get('problem')}", file=sys.stderr)
    if status == 401:
        print(
            f"this serve requires a token: put one in ${TOKEN_ENV} or pass --token-file "
            "(`orchestrator token new` makes one)",
            file=sys.stderr,
        )
    elif status == 403 and method != "GET":
        print("changes need a token with the operator role", file=sys.stderr)
    return None


def cmd_explain(args: argparse.Namespace) -> int:
    url = f"{args.url.rstrip('/')}/api/v1/gpus/{urllib.parse.quote(args.gpu, safe=':')}/explain"
    view = _read_api(url, args)
    if view is None:
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(view, indent=2))
        return EXIT_OK
    term, number = divmod(int(view["generation"]), 2**32)
    print(f"{view['gpu']} ({view['model']}), plan #{number} (term {term})")
    print(
        f"  runs {view['current']}; plan: {view['choice']}{' (switch)' if view['changed'] else ''}"
    )
    print(f"  reason: {view['reason']}")
    for line in _lifecycle_lines(view.get("lifecycle") or {}):
        print(f"  {line}")
    power = view.get("power") or {}
    if power.get("reading_w") is not None:
        print(f"  reads {power['reading_w']:.0f} W on the board (limit {power.get('limit_w')} W)")
    print(f"  {'candidate':<28} {'net $/h':>10} {'board W':>8} {'wall W':>8}  power from  note")
    for c in view["candidates"]:
        mark = "*" if c["chosen"] else " "
        board_w = c.get("board_w", c["power_w"])
        wall_w = c.get("wall_w", c["power_w"])
        source = c.get("power_source") or "-"
        if c.get("power_samples"):
            source += f" ({c['power_samples']})"
        print(
            f"{mark} {c['workload']:<28} {c['net_usd_per_hour']:>10.4f} {board_w:>8.0f} "
            f"{wall_w:>8.0f}  {source:<10}  {c['note']}"
        )
    return EXIT_OK


_HELD_WHY = {
    "site_power": "the site power cap has no room yet",
    "ramp": "the ramp limit",
    "node_starts": "the node's limit on starts",
}


def _lifecycle_lines(lifecycle: dict[str, Any]) -> list[str]:
    """The GPU's switch in flight or held back, or how its last one ended (a rollback is a
    failure)."""
    held = lifecycle.get("held")
    if held:
        why = _HELD_WHY.get(held.get("why") or "", "waiting for its turn")
        return [f"switch to {held['workload']} held back: {why} (+{held.get('rise_w', 0):.0f} W)"]
    flying = lifecycle.get("in_flight")
    if flying:
        step = f", at {flying['step']}" if flying.get("step") else ""
        return [f"switching to {flying['workload']} ({flying['state']}{step})"]
    last = lifecycle.get("last_switch")
    if not last:
        return []
    verdict = "FAILED, " if last.get("failed") else ""
    target = f" to {last['target']}" if last.get("target") else ""
    lines = [f"last switch{target}: {verdict}{last['state']}; runs {last.get('workload')}"]
    if last.get("outcome"):
        lines.append(f"  ({last['outcome']})")
    until_s = lifecycle.get("cooldown_until_s")
    if until_s:
        when = time.strftime("%H:%M:%S", time.localtime(until_s))
        lines.append(f"not ordered there again until {when} (cool-down after a failure)")
    return lines


def cmd_token_new(args: argparse.Namespace) -> int:
    from orchestrator.web.auth import digest, new_token  # noqa: PLC0415

    token = new_token()
    print(f"token (give it to {args.name}; it is not stored anywhere): {token}")
    print("config entry for serve:")
    print("[[http.tokens]]")
    print(f'name = "{args.name}"')
    print(f'role = "{args.role}"')
    print(f'sha256 = "{digest(token)}"')
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/api/v1/state"
    state = _read_api(url, args)
    if state is None:
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(state, indent=2))
        return EXIT_OK
    summary = state["summary"]
    print(
        f"site {state['site']}: {summary['nodes_online']}/{summary['nodes_total']} nodes online, "
        f"{summary['gpus_total']} GPUs ({summary['gpus_unknown']} unknown)"
    )
    for node in state["nodes"]:
        age = node["last_report_age_s"]
        print(f"  {node['node']:<20} {node['status']:<8} age {age if age is not None else '-'} s")
        for gpu in node["gpus"]:
            print(f"    {gpu['gpu']:<24} {gpu['state']:<10} {gpu['workload']}")
    return EXIT_OK


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
    listed = _read_api(_curtailments_url(args), args)
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
    created = _call_api("POST", _curtailments_url(args), args, body, expect=201)
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
    answer = _call_api("DELETE", url, args)
    if answer is None:
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(f"cancelled {answer.get('cancelled', args.id)}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "curtail": cmd_curtail,
    "serve": cmd_serve,
    "agent": cmd_agent,
    "demo": cmd_demo,
    "status": cmd_status,
    "miner": cmd_miner_read,
    "explain": cmd_explain,
    "token": cmd_token_new,
    "backtest": cmd_backtest,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "config":
            return cmd_config_check(args)
        return COMMANDS[args.command](args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OrchestratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
