"""Real processes for end-to-end tests: `openmvsep serve`, `openmvsep worker`, a private Redis, and fresh
PostgreSQL databases."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, workers: int = 1, port: int | None = None, **env):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "OPENMVSEP_DATA_DIR": str(data_dir),
            "OPENMVSEP_WORKERS": str(workers),
            "OPENMVSEP_WORKER_POLL_SECONDS": "0.2",
            "OPENMVSEP_PRECISION": "fp32",  # as conftest.make_settings
            **{k: str(v) for k, v in env.items()},
        }
        self.log_path = Path(data_dir).parent / f"serve-{self.port}.log"  # a file: a full pipe would block it
        Path(data_dir).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "openmvsep"), "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if self.curl("/health")["status"] == "ok":
                    return
            except (subprocess.CalledProcessError, json.JSONDecodeError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def curl(self, path: str, *args: str) -> dict:
        out = subprocess.run(
            ["curl", "-sS", "--fail-with-body", *args, self.url + path],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return json.loads(out)

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [str(BIN / "openmvsep"), *args], env=self.env, check=True, capture_output=True, text=True, timeout=60
        ).stdout

    def worker_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and "multiprocessing.spawn" in cmd and "resource_tracker" not in cmd:
                pids.append(int(entry.name))
        return pids

    def wait_status(self, hash_value: str, wanted: set[str], timeout: float = 60) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            body = self.curl(f"/api/separation/get?hash={hash_value}")
            if body["status"] in wanted:
                return body
            time.sleep(0.1)
        raise AssertionError(f"{hash_value} never reached {wanted}: {body}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class CeleryWorkers:
    """`openmvsep worker --concurrency N` in its own process group (killing the group = a machine going down)."""

    def __init__(self, env: dict[str, str], concurrency: int = 1, log: Path | None = None):
        self.log = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [str(BIN / "openmvsep"), "worker", "--concurrency", str(concurrency)],
            env={**env, "OPENMVSEP_DEVICE": "cpu"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def children(self) -> list[int]:
        return [pid for pid, ppid in _processes() if ppid == self.proc.pid]

    def freeze(self) -> None:
        """SIGSTOP to the whole group: the database shows exactly what it held at this moment."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL to the supervisor and every worker process: nothing gets to clean up."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything the supervisor left behind
        except ProcessLookupError:
            pass


def _processes() -> list[tuple[int, int]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            out.append((int(entry.name), int(stat.rsplit(")", 1)[1].split()[1])))
    return out


class RedisServer:
    """A private redis-server that keeps nothing on disk (as the machine's own): a restart loses every message."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


PG_ADMIN = os.environ.get("OPENMVSEP_TEST_POSTGRES", "postgresql+psycopg://root@127.0.0.1:5432/postgres")


def skip_without_postgres() -> None:
    """OPENMVSEP_SKIP_POSTGRES=1 skips every test that needs PostgreSQL (the README's switch for machines without)."""
    import pytest

    if os.environ.get("OPENMVSEP_SKIP_POSTGRES") == "1":
        pytest.skip("PostgreSQL tests disabled (OPENMVSEP_SKIP_POSTGRES=1)")


@contextmanager
def postgres_database():
    """A new, empty PostgreSQL database on this machine's server; dropped afterwards."""
    import psycopg

    skip_without_postgres()

    name = f"openmvsep_test_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
