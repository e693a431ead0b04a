"""Shared fixtures: profiles and GPUs to place them on, a private dockerd, a stub systemctl."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.profiles import ProfileSection
from orchestrator.drivers.base import GpuRef, WorkloadSpec

HERE = Path(__file__).parent
WORKLOAD_STUB = HERE / "workload_stub.py"
SYSTEMCTL_STUB = HERE / "stub_systemctl.py"
BUSYBOX = Path("/bin/busybox")
IMAGE = "orchestrator-test/busybox:1"

GPU0 = GpuRef(
    index=0, uuid="GPU-11111111-2222-3333-4444-555555555555", pci_bus_id="00000000:01:00.0"
)
GPU1 = GpuRef(
    index=1, uuid="GPU-66666666-7777-8888-9999-000000000000", pci_bus_id="00000000:02:00.0"
)


def make_profile(**fields: Any) -> ProfileSection:
    """A valid mining profile with `fields` merged over it (a sub-dict replaces, not merges)."""
    base: dict[str, Any] = {
        "id": "miner-a",
        "kind": "mining",
        "driver": "sim",
        "expected_power_w": 250,
        "algorithm": "kawpow",
        "expected_hashrate_hs": 25e6,
        "sim": {},
    }
    base.update(fields)
    return ProfileSection.model_validate(base)


def spec_for(profile: ProfileSection, gpu: GpuRef = GPU0, *, node: str = "node-a") -> WorkloadSpec:
    return WorkloadSpec.build(profile, gpu, node=node)


# ---------------------------------------------------------------- systemctl


@pytest.fixture
def stub_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`systemctl` on PATH is the stub; returns its state folder (state.json, calls.jsonl)."""
    bin_dir = tmp_path / "bin"
    state_dir = tmp_path / "systemctl-state"
    bin_dir.mkdir()
    state_dir.mkdir()
    wrapper = bin_dir / "systemctl"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SYSTEMCTL_STUB}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_SYSTEMCTL_DIR", str(state_dir))
    return state_dir


# ---------------------------------------------------------------- dockerd


@dataclass(frozen=True)
class Dockerd:
    socket_path: Path
    image: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        docker = shutil.which("docker") or "/usr/local/bin/docker"
        return subprocess.run(
            [docker, "-H", f"unix://{self.socket_path}", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


def _busybox_rootfs_tar(root: Path) -> Path:
    """A minimal rootfs: bin/busybox (static) and the applets the tests call."""
    bin_dir = root / "rootfs" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bin_dir / "busybox")
    for applet in ("sh", "sleep", "true", "env", "cat"):
        (bin_dir / applet).symlink_to("busybox")
    tar_path = root / "busybox.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(root / "rootfs", arcname=".")
    return tar_path


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Dockerd]:
    """A real dockerd on a private socket and data root, with a busybox image imported."""
    binary = shutil.which("dockerd")
    if binary is None or not BUSYBOX.exists():
        pytest.fail("dockerd or busybox missing: apt-get install docker.io busybox-static")
    root = Path(tempfile.mkdtemp(prefix="dk-", dir="/tmp"))  # short: unix socket paths <= 107
    socket_path = root / "docker.sock"
    log_path = root / "dockerd.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                "--host",
                f"unix://{socket_path}",
                "--data-root",
                str(root / "data"),
                "--exec-root",
                str(root / "exec"),
                "--pidfile",
                str(root / "docker.pid"),
                "--iptables=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        daemon = Dockerd(socket_path=socket_path, image=IMAGE)
        deadline = time.monotonic() + 20
        while daemon.cli("version").returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-800:]
                pytest.skip(f"dockerd cannot run in this sandbox (exit {proc.poll()}): {tail}")
            time.sleep(0.1)
        imported = daemon.cli("import", str(_busybox_rootfs_tar(root)), IMAGE)
        assert imported.returncode == 0, imported.stderr
        yield daemon
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def docker_cleanup(dockerd: Dockerd) -> Iterator[None]:
    """Remove every container a test left on the shared daemon."""
    yield
    listed = dockerd.cli("ps", "-aq")
    if listed.stdout.split():
        dockerd.cli("rm", "-f", *listed.stdout.split())


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def wait_for_text(path: Path, text: str, *, timeout_s: float = 10.0) -> str:
    """Wait until the file at `path` contains `text`; return the file's content."""
    deadline = time.monotonic() + timeout_s
    while True:
        content = _read(path)
        if text in content:
            return content
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never contained {text!r}: {content!r}")
        await asyncio.sleep(0.02)
