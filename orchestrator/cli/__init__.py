"""The `orchestrator` command line: daemons, the demo, and operators' tools.

Exit codes: 0 success, 1 a runtime failure, 2 bad usage or a bad config (the key and
the reason are printed), 130 interrupted. Daemons run under `asyncio.run` with signal
handlers that only set a stop flag (STYLE point 13).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from orchestrator import __version__
from orchestrator.cli.client import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    read_api,
    token_arguments,
)
from orchestrator.cli.curtail import add_curtail_parser, cmd_curtail
from orchestrator.config import AgentConfig, ServeConfig, load_config
from orchestrator.config.backtest import add_backtest_parser
from orchestrator.config.notices import config_notices
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.lifecycle import install_signal_handlers, tune_garbage_collector
from orchestrator.logs import configure_logging


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
    token_arguments(explain)

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    new = token_commands.add_parser("new", help="make a token and its [[http.tokens]] entry")
    new.add_argument("--name", required=True, help="who holds it (appears in the audit log)")
    new.add_argument("--role", choices=["viewer", "operator"], default="viewer")

    add_backtest_parser(commands)

    status = commands.add_parser("status", help="the fleet as the central daemon sees it")
    status.add_argument("--url", default="http://127.0.0.1:9850")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    token_arguments(status)

    add_curtail_parser(commands)
    return parser


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
    for key, message in config_notices(config, now_s=time.time()):
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
    for key, message in config_notices(config, now_s=time.time()):
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


def cmd_explain(args: argparse.Namespace) -> int:
    url = f"{args.url.rstrip('/')}/api/v1/gpus/{urllib.parse.quote(args.gpu, safe=':')}/explain"
    view = read_api(url, args)
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
    state = read_api(url, args)
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
