"""The real `serve` and `agent` processes over TLS with passwords, under the shipped ACL:
telemetry reaches serve, serve's command reaches the agent and runs, and no secret appears
in any log (debug level), nor in the environment of the workload the agent starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.site import AI, Site
from tests.security.conftest import E2E_NODES, PASSWORDS, SERVE_USER, SecureBroker
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def read_environments(pids: list[int]) -> list[bytes]:
    return [Path(f"/proc/{pid}/environ").read_bytes() for pid in pids]


def read_all(agents_dir: Path) -> list[str]:
    """The workloads' own logs (the process driver's per-GPU files)."""
    return [path.read_text(errors="replace") for path in agents_dir.glob("*/logs/*")]


async def test_serve_and_agents_work_with_passwords_over_tls_and_never_log_a_secret(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    password_file = tmp_path / "serve-mqtt-password"
    password_file.write_text(PASSWORDS[SERVE_USER] + "\n")
    site = Site(
        tmp_path,
        secure_broker.broker,
        mqtt_extra={"tls": {"enabled": True, "ca_file": str(secure_broker.certificates.ca)}},
        serve_mqtt={"username": SERVE_USER, "password": {"file": str(password_file)}},
        agent_mqtt={
            node: {"username": node, "password": {"env": f"MQTT_PASSWORD_{n}"}}
            for n, node in enumerate(E2E_NODES)
        },
        env={f"MQTT_PASSWORD_{n}": PASSWORDS[node] for n, node in enumerate(E2E_NODES)},
        nodes=E2E_NODES,
        gpus=2,
        log_level="debug",
    )
    try:
        site.start()
        await eventually(site.ready, timeout_s=30, what="serve connected over TLS")
        await eventually(
            lambda: len(site.reported()) == 4, timeout_s=30, what="both nodes' telemetry"
        )
        want = {f"{E2E_NODES[0]}:0": AI, f"{E2E_NODES[1]}:1": AI}
        site.pin(list(want), AI)
        await eventually(
            lambda: all(
                site.running().get(g) == w and site.reported().get(g) == w for g, w in want.items()
            ),
            timeout_s=40,
            what="serve's commands carried out by both agents",
        )
        environments = read_environments(site.running_pids())
    finally:
        site.close()
    logs = {daemon.name: daemon.log() for daemon in (site.serve, *site.agents.values())}
    assert all("mqtt connected" in text for text in logs.values())
    assert any('"level": "debug"' in text for text in logs.values())  # the chattiest level
    workload_logs = read_all(tmp_path / "agents")
    for secret in PASSWORDS.values():
        for name, text in logs.items():
            assert secret not in text, f"{name} logged a password"
        assert not any(secret in text for text in workload_logs)
        assert not any(secret.encode() in env for env in environments)
