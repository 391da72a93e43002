"""Job create latency and create->done time while wrong-password logins flood `app/login`.

Starts `openmvsep serve` with one worker process (SQLite, local storage, a throw-away data dir), runs
`db upgrade` and `user create`, then measures sequential jobs (sep_type 55 dsp, WAV out, 1 s stereo WAV):
  idle   with nothing else going on;
  flood  while C connections (each from its own loopback address, 127.0.0.2, .3, ...) send wrong-password
         logins for the bench account at R per second in all.
For each job: the create request's time, and create sent -> first `separation/get` (polled every 20 ms) saying
done. Also counts the logins' answers by status, and the "database is locked" lines in the server's log.
The per-route rate limit is off; R defaults to 7/s, under the default limit of 600 a minute anyway.
`--throttle off` sets the login throttle's limits to 0 (settings an older tree ignores), to see the flood of
full argon2 verifications alone.

Against another tree: PYTHONPATH=<tree>/src .venv/bin/python bench/login_flood.py

    .venv/bin/python bench/login_flood.py [--connections 8] [--rate 7] [--jobs 10] [--throttle on|off] [--json]
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# bench/queue.py would shadow the standard library's `queue` for every script run from this folder.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse
import json
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

BIN = Path(sys.executable).parent
POLL_SECONDS = 0.02
JOB_TIMEOUT_SECONDS = 300.0
EMAIL, PASSWORD = "bench@example.com", "benchmark-password"
JOB_FORM = {"sep_type": "55", "add_opt1": "dsp", "output_format": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_song(path: Path, seconds: float = 1.0, rate: int = 44100) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    centre, side = 0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)
    sf.write(path, np.stack([centre + side, centre - side], axis=1).astype(np.float32), rate, subtype="PCM_16")
    return path.read_bytes()


class Server:
    """`openmvsep serve` in a session of its own, logging to a file; stopped with SIGINT, then its group killed."""

    def __init__(self, env: dict[str, str], workdir: Path):
        self.log = workdir / "serve.log"
        self.port = free_port()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "openmvsep"), "serve", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"`openmvsep serve` did not come up:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def locked_lines(self) -> int:
        return self.log.read_text(errors="replace").count("database is locked")


def deploy(workdir: Path, throttle: bool) -> tuple[dict[str, str], str]:
    data = workdir / "data"
    data.mkdir()
    env = {
        **os.environ,
        "OPENMVSEP_DATA_DIR": str(data),
        "OPENMVSEP_WORKERS": "1",
        "OPENMVSEP_QC_DEFAULT_DATASET_TRACKS": "0",
        "OPENMVSEP_FREE_CONCURRENT_JOBS": "0",
        "OPENMVSEP_RATE_LIMIT_PER_MINUTE": "0",
        "OPENMVSEP_REUSE_RESULTS": "off",  # every job through the worker, not done at once as a repeat
    }
    if not throttle:
        env.update(OPENMVSEP_LOGIN_ACCOUNT_FAILURES="0", OPENMVSEP_LOGIN_ADDRESS_FAILURES="0")
    subprocess.run([str(BIN / "openmvsep"), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    done = subprocess.run(
        [str(BIN / "openmvsep"), "user", "create", "--email", EMAIL, "--password", PASSWORD],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return env, done.stdout.strip().splitlines()[-1]


def one_job(http: httpx.Client, token: str, song: bytes) -> tuple[float, float]:
    """(create request seconds, create sent -> seen done seconds)."""
    start = time.perf_counter()
    body = http.post(
        "/api/separation/create",
        data={"api_token": token, **JOB_FORM},
        files={"audiofile": ("bench.wav", song, "audio/wav")},
    ).json()
    created = time.perf_counter() - start
    if not body.get("success"):
        raise RuntimeError(f"create refused: {body}")
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status = http.get("/api/separation/get", params={"hash": body["data"]["hash"]}).json()["status"]
        if status == "done":
            return created, time.perf_counter() - start
        if status in ("failed", "not_found"):
            raise RuntimeError(f"job {status}")
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"job not done after {JOB_TIMEOUT_SECONDS:.0f} s")


class Flood:
    """C threads, each a keep-alive connection from its own loopback address, sending logins on a fixed schedule
    (R per second in all, staggered); a late answer delays only that connection's next try."""

    def __init__(self, base: str, connections: int, rate: float):
        self.base, self.connections, self.interval = base, connections, connections / rate
        self.stop_event = threading.Event()
        self.answers: Counter[str] = Counter()
        self.seconds: list[float] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(connections)]

    def _run(self, i: int) -> None:
        transport = httpx.HTTPTransport(local_address=f"127.0.0.{2 + i}")
        with httpx.Client(base_url=self.base, transport=transport, timeout=120) as http:
            next_at = time.monotonic() + i * self.interval / self.connections
            while not self.stop_event.is_set():
                delay = next_at - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    break
                next_at += self.interval
                start = time.perf_counter()
                try:
                    r = http.post("/api/app/login", data={"email": EMAIL, "password": "wrong-pass"})
                    answer = str(r.status_code)
                except httpx.HTTPError as e:
                    answer = type(e).__name__
                with self.lock:
                    self.answers[answer] += 1
                    self.seconds.append(time.perf_counter() - start)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_):
        self.stop_event.set()
        for t in self.threads:
            t.join(130)


def summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    create = [c for c, _ in samples]
    done = [d for _, d in samples]
    return {
        "create_median_s": statistics.median(create),
        "create_max_s": max(create),
        "done_median_s": statistics.median(done),
        "done_max_s": max(done),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=7.0, help="logins per second, all connections together")
    parser.add_argument("--jobs", type=int, default=10, help="sequential jobs per phase")
    parser.add_argument("--warm-seconds", type=float, default=3.0, help="flood before the first measured job")
    parser.add_argument("--throttle", choices=("on", "off"), default="on")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.connections < 1 or args.connections > 250 or args.rate <= 0 or args.jobs < 1:
        parser.error("--connections 1..250, --rate > 0, --jobs >= 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import openmvsep

    workdir = Path(tempfile.mkdtemp(prefix="openmvsep-bench-login-"))
    server = None
    try:
        song = write_song(workdir / "song.wav")
        env, token = deploy(workdir, args.throttle == "on")
        server = Server(env, workdir)
        server.wait_healthy()
        with httpx.Client(base_url=server.base, timeout=JOB_TIMEOUT_SECONDS) as http:
            one_job(http, token, song)  # warm-up: the worker imports and loads what a job needs
            idle = summary([one_job(http, token, song) for _ in range(args.jobs)])
            locked_before = server.locked_lines()
            with Flood(server.base, args.connections, args.rate) as flood:
                time.sleep(args.warm_seconds)
                started = time.perf_counter()
                flooded = summary([one_job(http, token, song) for _ in range(args.jobs)])
                seconds = time.perf_counter() - started + args.warm_seconds
            logins = {
                "answers": dict(sorted(flood.answers.items())),
                "per_second": sum(flood.answers.values()) / seconds,
                "median_s": statistics.median(flood.seconds) if flood.seconds else 0.0,
            }
        report = {
            "openmvsep": os.path.dirname(openmvsep.__file__),
            "connections": args.connections,
            "rate": args.rate,
            "throttle": args.throttle,
            "idle": idle,
            "flood": flooded,
            "logins": logins,
            "database_is_locked_lines": server.locked_lines() - locked_before,
        }
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"openmvsep from {report['openmvsep']}; throttle {args.throttle}; {args.jobs} jobs per phase")
    print(f"flood: {args.connections} connections, {args.rate:g} wrong-password logins/s in all")
    print(f"{'phase':6} {'create median s':>16} {'create max s':>13} {'done median s':>14} {'done max s':>11}")
    for phase in ("idle", "flood"):
        r = report[phase]
        print(
            f"{phase:6} {r['create_median_s']:16.3f} {r['create_max_s']:13.3f} "
            f"{r['done_median_s']:14.3f} {r['done_max_s']:11.3f}"
        )
    print(
        f"logins answered: {logins['answers']} ({logins['per_second']:.1f}/s, median {logins['median_s']:.3f} s); "
        f'"database is locked" in the log during the flood: {report["database_is_locked_lines"]}'
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
