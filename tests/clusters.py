"""Real components for the end-to-end tests: a Ray cluster started with ``ray start`` (one or
two nodes on loopback, free ports) and an ``mlflow server`` on loopback."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
QUIET = {
    "RAY_DEDUP_LOGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TQDM_DISABLE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(**extra: str) -> dict[str, str]:
    """This interpreter's environment (venv first on PATH) without a stray cluster address."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **QUIET, **extra}


def run(
    command: list[str], *, timeout: float, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or environment(),
        **kwargs,
    )


class RayCluster:
    """``ray start --head`` (+ ``ray start --address`` per extra node) with Ray's token
    authentication on, as in production; ``ray stop`` at exit (which stops every Ray process of
    this machine: the tests run one cluster at a time)."""

    def __init__(self, *, head_cpus: int, token_dir: Path, head_memory: int | None = None) -> None:
        token = token_dir / "ray_auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.port = free_port()
        self.dashboard_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self._start(
            "--head",
            f"--port={self.port}",
            f"--num-cpus={head_cpus}",
            *([f"--memory={head_memory}"] if head_memory is not None else []),
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_port()}",
            "--disable-usage-stats",
        )
        self._wait_for_dashboard()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process that talks to this cluster (address and token)."""
        return environment(RAY_ADDRESS=self.address, **self.auth, **extra)

    def add_node(self, *, cpus: int) -> None:
        self._start(f"--address={self.address}", f"--num-cpus={cpus}")

    def alive_nodes(self, *, expect: int, wait_s: float = 120) -> int:
        """Alive nodes, polled until ``expect`` have registered (or the time is up)."""
        deadline = time.monotonic() + wait_s
        while True:
            done = run(
                [str(BIN / "python"), "-c", NODES_SCRIPT, self.address],
                timeout=120,
                env=self.env(),
            )
            lines = done.stdout.strip().splitlines()
            count = int(lines[-1]) if done.returncode == 0 and lines else -1
            if count == expect or time.monotonic() > deadline:
                if count < 0:
                    raise RuntimeError(f"cannot list the nodes:\n{done.stderr[-3000:]}")
                return count
            time.sleep(2)

    def stop(self) -> None:
        run([str(BIN / "ray"), "stop", "--force"], timeout=120, env=environment(**self.auth))

    def _start(self, *args: str) -> None:
        done = run([str(BIN / "ray"), "start", *args], timeout=180, env=environment(**self.auth))
        if done.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{done.stdout}\n{done.stderr}")

    def _wait_for_dashboard(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=5):
                    return
            except urllib.error.HTTPError:  # 401: up, and asking for Ray's auth token
                return
            except OSError:
                time.sleep(1)
        raise RuntimeError("the Ray dashboard (job server) did not come up")


NODES_SCRIPT = """
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
print(sum(node["Alive"] for node in ray.nodes()))
"""


@contextmanager
def ray_cluster(
    token_dir: Path,
    *,
    head_cpus: int = 2,
    extra_nodes: int = 0,
    extra_cpus: int = 1,
    head_memory: int | None = None,
) -> Iterator[RayCluster]:
    cluster = RayCluster(head_cpus=head_cpus, token_dir=token_dir, head_memory=head_memory)
    try:
        for _ in range(extra_nodes):
            cluster.add_node(cpus=extra_cpus)
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def mlflow_server(root: Path, port: int | None = None) -> Iterator[str]:
    """A real tracking server (SQLite backend, proxied artifact store) on a loopback port;
    started again with the same ``root`` and ``port``, it is the same server after a restart."""
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = (root / "server.log").open("a")
    process = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--backend-store-uri=sqlite:///{root}/mlflow.db",
            f"--artifacts-destination={root}/artifacts",
            "--workers=1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment(),
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((root / "server.log").read_text()) from None
                time.sleep(1)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def rest(uri: str, endpoint: str, payload: dict | None = None) -> dict:
    """Call the MLflow REST API (GET without payload, POST with)."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{endpoint}",
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())
