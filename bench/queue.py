"""End-to-end latency of a 1 s job and jobs/s with two workers, local and celery executors side by side.

For each executor, starts a throw-away deployment with two worker processes on this machine:
  local   `openmvsep serve` with OPENMVSEP_WORKERS=2, SQLite and local storage in a temp data dir;
  celery  a fresh PostgreSQL database, Redis with a queue of its own, `openmvsep serve` (no workers) and
          `openmvsep worker --concurrency 2` sharing the temp data dir's local storage.
The job is sep_type 55 (dsp), WAV out, on a 1 s stereo WAV. Warm-up: pairs of jobs at once until the
database shows both worker processes have run one (so both have started and loaded everything). Then:
  latency     N jobs one after another: send create -> first `separation/get` (polled every 20 ms) saying done;
  throughput  M jobs created at once from a thread pool: M / (last seen done - first create sent).
Poll and reconcile intervals are left at their defaults (what users get) and printed.

    .venv/bin/python bench/queue.py [--executors local,celery] [--latency-jobs 20] [--throughput-jobs 40] [--json]
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# bench/queue.py would shadow the standard library's `queue` (which torch, httpx and concurrent.futures import)
# for every script run from this folder: the folder leaves the import path before anything else is imported.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse
import json
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

BIN = Path(sys.executable).parent
POLL_SECONDS = 0.02
JOB_TIMEOUT_SECONDS = 120.0
# Both deployments: nothing made at first start, no per-user or per-address limits in the way of a queue, and every
# job run by a worker (the same song again would otherwise be done at once with the first job's outputs).
COMMON_ENV = {
    "OPENMVSEP_QC_DEFAULT_DATASET_TRACKS": "0",
    "OPENMVSEP_FREE_CONCURRENT_JOBS": "0",
    "OPENMVSEP_RATE_LIMIT_PER_MINUTE": "0",
    "OPENMVSEP_REUSE_RESULTS": "off",
}
JOB_FORM = {"sep_type": "55", "add_opt1": "dsp", "output_format": "1"}  # output_format 1: WAV


# -------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A command in a session of its own, logging to a file: the terminal's Ctrl-C reaches only this script,
    which then stops it in order, and killing the session afterwards takes any child it left behind."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, stop_signal: int):
        self.log = log
        self.stop_signal = stop_signal
        with open(log, "ab") as out:  # a file, not a pipe: nobody reads it while the bench runs
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, grace: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def wait_healthy(base: str, server: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"`openmvsep serve` did not come up:\n{server.log_tail()}")


@contextmanager
def postgres_database(admin_url: str):
    """A new, empty database on the PostgreSQL server behind admin_url, dropped afterwards."""
    import psycopg

    name = f"openmvsep_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        version = conn.info.server_version
    try:
        url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1).rsplit("/", 1)[0] + f"/{name}"
        yield url, f"PostgreSQL {version // 10000}.{version % 10000}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_version(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return f"Redis {client.info('server')['redis_version']}"
    finally:
        client.close()


@dataclass
class Deployment:
    executor: str
    base: str
    token: str
    database: str
    database_url: str
    broker: str
    settings: dict[str, float]


def deploy(executor: str, stack: ExitStack, args: argparse.Namespace) -> Deployment:
    """Start one executor's processes; the stack stops them and removes what they made."""
    from openmvsep.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix=f"openmvsep-bench-{executor}-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    data = workdir / "data"
    data.mkdir()
    env = {**os.environ, **COMMON_ENV, "OPENMVSEP_DATA_DIR": str(data), "OPENMVSEP_EXECUTOR": executor}
    if executor == "local":
        env["OPENMVSEP_WORKERS"] = "2"
        database, broker = f"SQLite {sqlite3.sqlite_version}", "none (in-process)"
    else:
        url, database = stack.enter_context(postgres_database(args.postgres))
        env.update(
            OPENMVSEP_WORKERS="0",
            OPENMVSEP_DATABASE_URL=url,
            OPENMVSEP_BROKER_URL=args.broker,
            OPENMVSEP_CELERY_QUEUE=f"openmvsep-bench-{uuid.uuid4().hex[:8]}",
        )
        broker = f"{redis_version(args.broker)} at {args.broker}"
    # The settings exactly as the processes will read them from this environment.
    settings = Settings(
        **{k.removeprefix("OPENMVSEP_").lower(): v for k, v in env.items() if k.startswith("OPENMVSEP_")}
    )
    # What decides how soon idle workers see new work: local workers are woken on create and poll besides;
    # celery workers wait on the broker, and an API process tops it up on create and every reconcile pass.
    shown = (
        {"worker_poll_seconds": settings.worker_poll_seconds}
        if executor == "local"
        else {"reconcile_seconds": settings.reconcile_seconds}
    )

    subprocess.run([str(BIN / "openmvsep"), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    token = (
        subprocess.run(
            [str(BIN / "openmvsep"), "user", "create", "--email", "bench@example.com", "--password", "benchmark"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = free_port()
    server = Process([str(BIN / "openmvsep"), "serve", "--port", str(port)], env, workdir / "serve.log", signal.SIGINT)
    stack.callback(server.stop)
    if executor == "celery":
        worker = Process(
            [str(BIN / "openmvsep"), "worker", "--concurrency", "2"],
            {**env, "OPENMVSEP_DEVICE": "cpu"},
            workdir / "worker.log",
            signal.SIGTERM,
        )
        stack.callback(worker.stop)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, server)
    return Deployment(executor, base, token, database, settings.effective_database_url, broker, shown)


# -------------------------------------------------------------------- jobs


def write_song(path: Path, seconds: float = 1.0, rate: int = 44100) -> bytes:
    """A stereo mix with a centred tone and a hard-panned one, so the dsp split has work in both stems."""
    t = np.arange(int(seconds * rate)) / rate
    centre = 0.3 * np.sin(2 * np.pi * 220 * t)
    side = 0.2 * np.sin(2 * np.pi * 330 * t)
    sf.write(path, np.stack([centre + side, centre - side], axis=1).astype(np.float32), rate, subtype="PCM_16")
    return path.read_bytes()


class Client:
    def __init__(self, dep: Deployment, song: bytes):
        self.dep = dep
        self.song = song
        self.http = httpx.Client(base_url=dep.base, timeout=60, limits=httpx.Limits(max_connections=32))

    def create(self) -> str:
        body = self.http.post(
            "/api/separation/create",
            data={"api_token": self.dep.token, **JOB_FORM},
            files={"audiofile": ("bench.wav", self.song, "audio/wav")},
        ).json()
        if not body.get("success"):
            raise RuntimeError(f"create refused: {body}")
        return body["data"]["hash"]

    def is_done(self, hash_value: str) -> bool:
        body = self.http.get("/api/separation/get", params={"hash": hash_value}).json()
        if body["status"] in ("failed", "not_found"):
            raise RuntimeError(f"job {hash_value} {body['status']}: {body.get('data')}")
        return body["status"] == "done"

    def wait_done(self, hash_value: str) -> float:
        """perf_counter of the first poll that says done."""
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.is_done(hash_value):
                return time.perf_counter()
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"job {hash_value} not done after {JOB_TIMEOUT_SECONDS:.0f} s")


def workers_that_ran_work(database_url: str) -> int:
    """Distinct worker processes with finished work: the API does not say who ran a job, the database does."""
    from sqlalchemy import distinct, func, select

    from openmvsep.store.db import Database
    from openmvsep.store.models import WorkItem

    db = Database(database_url)
    try:
        with db.reader() as s:
            return int(s.scalar(select(func.count(distinct(WorkItem.worker))).where(WorkItem.status == "done")) or 0)
    finally:
        db.dispose()


def warm_up(client: Client, pool: ThreadPoolExecutor, database_url: str, workers: int = 2, rounds: int = 10) -> int:
    """Pairs of jobs at once until every worker has run one (so each has imported and loaded what a job needs);
    a worker still starting lets the other take both. Returns the warm-up jobs run."""
    for round_ in range(1, rounds + 1):
        for hash_value in list(pool.map(lambda _: client.create(), range(workers))):
            client.wait_done(hash_value)
        if workers_that_ran_work(database_url) >= workers:
            return round_ * workers
        time.sleep(1)  # give a late worker time to finish starting
    raise RuntimeError(f"after {rounds * workers} warm-up jobs, not all {workers} workers had run one")


def latencies(client: Client, jobs: int) -> list[float]:
    out = []
    for _ in range(jobs):
        start = time.perf_counter()
        out.append(client.wait_done(client.create()) - start)
    return out


def throughput(client: Client, pool: ThreadPoolExecutor, jobs: int) -> float:
    first_create = time.perf_counter()
    hashes = list(pool.map(lambda _: client.create(), range(jobs)))
    # Waited for in creation order (the queue's order for one user): one job is polled at a time, so polling
    # takes little from the two busy workers, and the loop ends within a poll of the last job finishing.
    last_done = first_create
    for hash_value in hashes:
        last_done = client.wait_done(hash_value)
    return jobs / (last_done - first_create)


@dataclass
class Result:
    executor: str
    warm_up_jobs: int
    latency_ms: dict[str, float]
    jobs_per_second: float
    database: str
    broker: str
    settings: dict[str, float]


def measure(executor: str, song: bytes, args: argparse.Namespace) -> Result:
    with ExitStack() as stack:
        dep = deploy(executor, stack, args)
        client = Client(dep, song)
        stack.callback(client.http.close)
        pool = stack.enter_context(ThreadPoolExecutor(args.clients))
        stack.callback(pool.shutdown, cancel_futures=True)  # Ctrl-C: queued creates are not sent
        warmed = warm_up(client, pool, dep.database_url)
        lat = latencies(client, args.latency_jobs)
        jps = throughput(client, pool, args.throughput_jobs)
    ms = sorted(x * 1000 for x in lat)
    p90 = statistics.quantiles(ms, n=10, method="inclusive")[-1] if len(ms) > 1 else ms[0]
    return Result(
        executor,
        warmed,
        {"median": statistics.median(ms), "p90": p90, "min": ms[0]},
        jps,
        dep.database,
        dep.broker,
        dep.settings,
    )


# -------------------------------------------------------------------- report


def machine() -> dict[str, str | int]:
    from importlib.metadata import version

    return {
        "cpus": os.cpu_count() or 0,
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "openmvsep": version("openmvsep"),
    }


def celery_over_local(results: list[Result]) -> dict[str, float] | None:
    by_name = {r.executor: r for r in results}
    if not {"local", "celery"} <= by_name.keys():
        return None
    celery, local = by_name["celery"], by_name["local"]
    ratio = {k: celery.latency_ms[k] / local.latency_ms[k] for k in ("median", "p90", "min")}
    ratio["jobs_per_second"] = celery.jobs_per_second / local.jobs_per_second
    return ratio


def print_table(results: list[Result], facts: dict, args: argparse.Namespace) -> None:
    print(
        f"machine: {facts['cpus_usable']}/{facts['cpus']} CPUs usable, Python {facts['python']}, "
        f"{facts['platform']}, openmvsep {facts['openmvsep']}"
    )
    print(
        f"job: sep_type 55 dsp, WAV out, 1 s stereo WAV; latency over {args.latency_jobs} sequential jobs "
        f"(polled every {POLL_SECONDS * 1000:.0f} ms), throughput over {args.throughput_jobs} jobs "
        f"({args.clients} creating threads); 2 workers each"
    )
    for r in results:
        shown = ", ".join(f"{k}={v:g}" for k, v in r.settings.items())
        print(f"{r.executor:7} db {r.database}; broker {r.broker}; {shown}; {r.warm_up_jobs} warm-up jobs")
    print()
    print(f"{'executor':12} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'jobs/s':>8}")
    for r in results:
        lat = r.latency_ms
        print(f"{r.executor:12} {lat['median']:10.0f} {lat['p90']:8.0f} {lat['min']:8.0f} {r.jobs_per_second:8.2f}")
    ratio = celery_over_local(results)
    if ratio:
        print(
            f"{'celery/local':12} {ratio['median']:10.2f} {ratio['p90']:8.2f} {ratio['min']:8.2f} "
            f"{ratio['jobs_per_second']:8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executors", default="local,celery", help="comma-separated: local, celery")
    parser.add_argument("--latency-jobs", type=int, default=20)
    parser.add_argument("--throughput-jobs", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8, help="threads creating the throughput jobs")
    parser.add_argument(
        "--postgres",
        default="postgresql://root@127.0.0.1:5432/postgres",
        help="celery: a server where a throw-away database may be created (admin URL)",
    )
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0", help="celery: the Redis to use")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    executors = [e.strip() for e in args.executors.split(",") if e.strip()]
    if not executors or set(executors) - {"local", "celery"}:
        parser.error("--executors takes local and/or celery")
    if args.latency_jobs < 1 or args.throughput_jobs < 1:
        parser.error("job counts must be at least 1")
    # `kill` gets the same clean-up as Ctrl-C: the finally blocks stop the processes and drop the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with tempfile.TemporaryDirectory(prefix="openmvsep-bench-") as tmp:
        song = write_song(Path(tmp) / "song.wav")
        results = []
        for executor in executors:
            if not args.json:
                print(f"measuring {executor} ...", file=sys.stderr, flush=True)
            results.append(measure(executor, song, args))
    facts = machine()
    if args.json:
        print(
            json.dumps(
                {
                    "machine": facts,
                    "latency_jobs": args.latency_jobs,
                    "throughput_jobs": args.throughput_jobs,
                    "clients": args.clients,
                    "results": [asdict(r) for r in results],
                    "celery_over_local": celery_over_local(results),
                },
                indent=2,
            )
        )
    else:
        print_table(results, facts, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # everything is stopped and removed by then; a traceback would say nothing
        sys.exit(130)
