"""One job-lifecycle suite against both executors, with real processes: `openmvsep serve` and two worker
processes — local (SQLite, a local store, `serve`'s own workers) or celery (PostgreSQL, Redis, `openmvsep
worker`, S3-compatible storage on a real SeaweedFS server) — and the faults scale-out must survive."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import soundfile as sf
from sqlalchemy import select

from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.models import CreditEntry, Job, WorkItem
from openmvsep.store.storage import make_storage

from conftest import stereo_mix
from processes import CeleryWorkers, RedisServer, Server, free_port, postgres_database

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")

FAST_FAILOVER = {  # a dead worker's work comes back within seconds
    "OPENMVSEP_LEASE_SECONDS": "4",
    "OPENMVSEP_HEARTBEAT_SECONDS": "1",
    "OPENMVSEP_RECONCILE_SECONDS": "0.5",
    "OPENMVSEP_WORKER_POLL_SECONDS": "0.2",
    "OPENMVSEP_QC_DEFAULT_DATASET_TRACKS": "0",
}


class Cluster:
    """An API server and two worker processes with either executor; the workers stop and start on demand."""

    def __init__(
        self, executor: str, tmp_path: Path, stack: ExitStack, *, broker_url: str | None = None, s3=None, **env: str
    ):
        self.executor = executor
        self.tmp_path = tmp_path
        self.data = tmp_path / "data"
        self.env = {**FAST_FAILOVER, "OPENMVSEP_EXECUTOR": executor, **env}
        if executor == "celery":
            self.env["OPENMVSEP_DATABASE_URL"] = stack.enter_context(postgres_database())
            self.env["OPENMVSEP_BROKER_URL"] = broker_url or "redis://127.0.0.1:6379/0"
            self.env["OPENMVSEP_CELERY_QUEUE"] = f"openmvsep-test-{uuid.uuid4().hex[:8]}"
            if s3 is not None:
                self.env.update(s3.new_bucket().env())
        self.port = free_port()
        self.server = Server(self.data, workers=0, port=self.port, **self.env)
        self.pools: list[CeleryWorkers] = []
        stack.callback(self.close)

    # ---------------------------------------------------------------- processes

    def start_workers(self, pools: int = 1) -> None:
        """Two worker processes: `serve`'s own (local), or `openmvsep worker` (celery; `pools` commands)."""
        if self.executor == "local":
            self.server.stop()
            self.server = Server(self.data, workers=2, port=self.port, **self.env)
        else:
            for _ in range(pools):
                self.pools.append(
                    CeleryWorkers(
                        self.server.env, concurrency=2 // pools, log=self.tmp_path / f"worker-{len(self.pools)}.log"
                    )
                )

    def restart_api(self, kill: bool = False) -> None:
        if kill:
            self.server.proc.kill()
            self.server.proc.wait()
        else:
            self.server.stop()
        self.server = Server(self.data, workers=0 if self.executor == "celery" else 2, port=self.port, **self.env)

    def close(self) -> None:
        for pool in self.pools:
            pool.stop()
        self.server.stop()
        if self.executor == "celery":  # the broker is shared with other runs: leave no queue behind
            from openmvsep.runner.celery_app import make_celery

            try:
                with make_celery(self.settings()).connection_for_write() as conn:
                    conn.default_channel.queue_delete(self.env["OPENMVSEP_CELERY_QUEUE"])
            except Exception:
                pass

    # ---------------------------------------------------------------- what the tests look at

    def settings(self) -> Settings:
        values = {
            k.removeprefix("OPENMVSEP_").lower(): v for k, v in self.server.env.items() if k.startswith("OPENMVSEP_")
        }
        return Settings(**values)

    def db(self) -> Database:
        return Database(self.settings().effective_database_url)

    def user(self, email: str, *, credits: int = 0, premium: bool = False) -> str:
        args = ["user", "create", "--email", email, "--password", "password123", "--credits", str(credits)]
        return self.server.cli(*args, *(["--premium"] if premium else [])).strip().splitlines()[-1]

    def create(self, token: str, seconds: float, name: str = "song.flac") -> str:
        song = self.tmp_path / name
        sf.write(song, stereo_mix(seconds).T, 44100)
        body = self.server.curl(
            "/api/separation/create",
            "-F",
            f"api_token={token}",
            "-F",
            "sep_type=55",
            "-F",
            "add_opt1=dsp",
            "-F",
            "output_format=2",
            "-F",
            f"audiofile=@{song}",
        )
        assert body["success"], body
        return body["data"]["hash"]

    def wait(self, hash_value: str, wanted=("done", "failed"), timeout: float = 120) -> dict:
        return self.server.wait_status(hash_value, set(wanted), timeout)

    def ledger(self, email: str) -> list[tuple[str, int]]:
        from openmvsep.store.models import User

        db = self.db()
        try:
            with db.reader() as s:
                user = s.scalars(select(User).where(User.email == email)).one()
                return [
                    (e.reason, e.delta)
                    for e in s.scalars(
                        select(CreditEntry).where(CreditEntry.user_id == user.id).order_by(CreditEntry.id)
                    )
                ]
        finally:
            db.dispose()

    def input_key(self, hash_value: str) -> str:
        db = self.db()
        try:
            with db.reader() as s:
                return s.scalars(select(Job).where(Job.hash == hash_value)).one().inputs["audiofile"]["key"]
        finally:
            db.dispose()

    def items(self, hash_value: str) -> list[WorkItem]:
        db = self.db()
        try:
            with db.reader() as s:
                job = s.scalars(select(Job).where(Job.hash == hash_value)).one()
                return list(s.scalars(select(WorkItem).where(WorkItem.job_id == job.id).order_by(WorkItem.index)))
        finally:
            db.dispose()


@pytest.fixture(params=["local", "celery"])
def cluster(request, tmp_path):
    with ExitStack() as stack:
        s3 = request.getfixturevalue("seaweedfs") if request.param == "celery" else None
        yield Cluster(
            request.param,
            tmp_path,
            stack,
            s3=s3,
            OPENMVSEP_CHUNK_THRESHOLD_SECONDS="8",
            OPENMVSEP_CHUNK_SECONDS="2",
            OPENMVSEP_CHUNK_OVERLAP_SECONDS="0.1",
        )


# -------------------------------------------------------------------- the lifecycle, both executors


def test_jobs_run_fan_out_and_merge(cluster):
    token = cluster.user("p@example.com", credits=10, premium=True)
    cluster.start_workers()
    short = cluster.create(token, 1.0)
    done = cluster.wait(short)
    assert done["status"] == "done", done
    assert [f["type"] for f in done["data"]["files"]] == ["Center", "Wide"]
    for f in done["data"]["files"]:  # every URL downloads, from whichever store holds the files
        got = subprocess.run(["curl", "-sS", "--fail", "-o", "-", "-L", f["url"]], capture_output=True, check=True)
        assert len(got.stdout) == f["bytes"] > 1000

    long = cluster.create(token, 24.0, "long.flac")  # 12 chunks of 2 s, spread over both workers
    done = cluster.wait(long)
    assert done["status"] == "done", done
    items = cluster.items(long)
    chunks = [i for i in items if i.kind == "chunk"]
    assert len(chunks) == 12 and [i.kind for i in items].count("merge") == 1
    assert all(i.status == "done" for i in items)
    assert len({i.worker for i in chunks}) == 2, "the chunks did not fan out across the two workers"
    merged, _ = sf.read(_download(cluster, done["data"]["files"][0]["url"]))
    assert abs(merged.shape[0] - 24.0 * 44100) <= 1
    assert cluster.ledger("p@example.com") == [("grant", 10), ("charge", -1), ("charge", -1)]


def test_plan_priority_and_cancel_across_workers(cluster):
    premium = cluster.user("p@example.com", credits=10, premium=True)
    free = [cluster.user(f"f{i}@example.com") for i in range(4)]
    queued_free = [cluster.create(token, 2.0, f"free{i}.flac") for i, token in enumerate(free)]
    cancelled = cluster.create(premium, 2.0, "cancelled.flac")
    body = cluster.server.curl("/api/separation/cancel", "-F", f"api_token={premium}", "-F", f"hash={cancelled}")
    assert body["success"], body
    first = cluster.create(premium, 2.0, "premium.flac")
    assert cluster.server.curl(f"/api/separation/get?hash={first}")["data"]["current_order"] == 1

    cluster.start_workers()
    for hash_value in [first, *queued_free]:
        assert cluster.wait(hash_value)["status"] == "done"
    db = cluster.db()
    with db.reader() as s:
        started = {j.hash: j.started_at for j in s.scalars(select(Job))}
    db.dispose()
    # Two workers start at once: the premium job is in the first pair claimed, whatever the broker's order.
    assert sum(started[h] < started[first] for h in queued_free) <= 1
    assert started[cancelled] is None
    assert cluster.ledger("p@example.com") == [("grant", 10), ("charge", -1), ("refund", 1), ("charge", -1)]


def test_chunk_failing_three_times_fails_the_job_and_refunds(cluster):
    token = cluster.user("p@example.com", credits=10, premium=True)
    hash_value = cluster.create(token, 12.0)
    # The store loses the input before any worker reads it: every attempt at every chunk fails.
    job_input = cluster.input_key(hash_value)
    storage = make_storage(cluster.settings())
    assert storage.exists(job_input)
    storage.delete(job_input)
    cluster.start_workers()
    failed = cluster.wait(hash_value)
    assert failed["status"] == "failed"
    assert "failed 3 times" in failed["data"]["message"], failed
    items = cluster.items(hash_value)
    assert max(i.attempts for i in items) == 3
    assert all(i.status == "failed" for i in items)
    assert cluster.ledger("p@example.com") == [("grant", 10), ("charge", -1), ("refund", 1)]
    user = cluster.server.curl(f"/api/app/user?api_token={token}")["data"]
    assert user["premium_minutes"] == 10


def test_api_process_killed_mid_upload_leaves_nothing(cluster):
    token = cluster.user("p@example.com", credits=10, premium=True)
    cluster.start_workers()
    storage = make_storage(cluster.settings())
    # What a process killed a moment later would have left: a received upload in its scratch folder, and an
    # input stored before its row committed.
    dead_pid = _dead_pid()
    leftover = cluster.settings().scratch_root / f"{socket.gethostname()}-{dead_pid}-abc"
    leftover.mkdir(parents=True)
    (leftover / "audiofile.upload").write_bytes(b"x" * 1000)
    orphan = cluster.tmp_path / "orphan.wav"
    orphan.write_bytes(b"RIFF" + b"\0" * 100)
    storage.put_file("temp/20260101000000-0123456789-orphan.wav", orphan)

    # A 40 MB upload, cut off half-way by SIGKILL.
    with socket.create_connection(("127.0.0.1", cluster.port)) as conn:
        boundary = "x" * 20
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="api_token"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="sep_type"\r\n\r\n55\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="audiofile"; filename="big.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        total = len(head) + 40_000_000 + len(f"\r\n--{boundary}--\r\n")
        conn.sendall(
            f"POST /api/separation/create HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
            + head
        )
        for _ in range(20):
            conn.sendall(b"\0" * 1_000_000)
        cluster.env["OPENMVSEP_ORPHAN_GRACE_SECONDS"] = "0"  # no create is in flight after the kill
        cluster.restart_api(kill=True)

    deadline = time.time() + 30
    while time.time() < deadline and (leftover.exists() or storage.exists("temp/20260101000000-0123456789-orphan.wav")):
        time.sleep(0.2)
    assert not leftover.exists()
    assert list(storage.list("temp")) == []
    db = cluster.db()
    with db.reader() as s:
        assert s.scalars(select(Job)).all() == []
    db.dispose()
    # and the restarted server works
    assert cluster.wait(cluster.create(token, 1.0))["status"] == "done"


# -------------------------------------------------------------------- faults only scale-out has


@pytest.fixture
def celery_cluster(tmp_path, seaweedfs):
    with ExitStack() as stack:
        redis = RedisServer(tmp_path / "redis")
        stack.callback(redis.stop)
        c = Cluster(
            "celery",
            tmp_path,
            stack,
            broker_url=redis.url,
            s3=seaweedfs,
            OPENMVSEP_CHUNK_THRESHOLD_SECONDS="1",
            OPENMVSEP_CHUNK_SECONDS="0.5",
            OPENMVSEP_CHUNK_OVERLAP_SECONDS="0.05",
        )
        c.redis = redis
        yield c


def test_worker_killed_mid_job_finishes_on_the_other_and_charges_once(celery_cluster):
    c = celery_cluster
    token = c.user("p@example.com", credits=10, premium=True)
    c.start_workers(pools=2)  # two machines, one worker process each
    hash_value = c.create(token, 30.0)  # 60 chunks
    c.wait(hash_value, {"distributing"}, timeout=60)
    names, victim = _kill_a_pool_holding_a_chunk(c, hash_value)
    done = c.wait(hash_value, timeout=180)
    assert done["status"] == "done", done
    items = c.items(hash_value)
    dead = names[victim]
    survivor = next(iter(names[next(p for p in c.pools if p is not victim)]))
    taken_over = [i for i in items if i.attempts > 1]
    assert taken_over and all(i.worker == survivor for i in taken_over)
    assert not any(i.worker in dead and i.status != "done" for i in items)
    assert c.ledger("p@example.com") == [("grant", 10), ("charge", -1)]


def test_broker_restart_with_jobs_queued_loses_none(celery_cluster):
    import redis as redis_client

    c = celery_cluster
    tokens = [c.user(f"u{i}@example.com", credits=5, premium=True) for i in range(3)]
    hashes = [c.create(token, 0.5, f"s{i}.flac") for i, token in enumerate(tokens)]
    queue = c.env["OPENMVSEP_CELERY_QUEUE"]
    broker = redis_client.Redis(port=c.redis.port)
    assert broker.llen(queue) >= 3  # a message per queued job (two top-ups at once may send one more)
    c.redis.stop()  # keeps nothing on disk: every message is gone
    c.redis.start()
    c.start_workers()
    for hash_value in hashes:
        assert c.wait(hash_value)["status"] == "done"


# -------------------------------------------------------------------- helpers


def _download(cluster: Cluster, url: str) -> Path:
    out = cluster.tmp_path / f"dl-{uuid.uuid4().hex[:6]}"
    subprocess.run(["curl", "-sS", "--fail", "-L", "-o", str(out), url], check=True)
    return out


def _worker_names(pool: CeleryWorkers) -> set[str]:
    names = set()
    for pid in pool.children():
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names |= {e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"OPENMVSEP_WORKER_NAME=")}
    return names


def _kill_a_pool_holding_a_chunk(cluster: Cluster, hash_value: str, timeout: float = 30.0):
    """Kill a pool while one of its processes holds a running chunk of the job; return every pool's worker
    names and the killed pool.

    Each try freezes a pool first, so the chunk it is seen holding cannot finish before the kill; a pool
    caught between two chunks (or a process not started yet) is thawed and the next is tried."""
    deadline = time.time() + timeout
    while True:
        for pool in cluster.pools:
            pool.freeze()
            names = {p: _worker_names(p) for p in cluster.pools}
            running = {i.worker for i in cluster.items(hash_value) if i.status == "running"}
            if names[pool] & running:
                pool.kill()
                return names, pool
            pool.thaw()
        assert time.time() < deadline, f"no pool held a running chunk: {names} {running}"
        time.sleep(0.05)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_two_api_processes_share_only_database_broker_and_storage(celery_cluster):
    c = celery_cluster
    token = c.user("p@example.com", credits=10, premium=True)
    other_env = {k: v for k, v in c.server.env.items() if k.startswith(("OPENMVSEP_", "AWS_"))}
    other_env.pop("OPENMVSEP_DATA_DIR")
    other = Server(c.tmp_path / "other-api", workers=0, **other_env)  # its own data dir: nothing shared there
    try:
        c.start_workers()
        hash_value = c.create(token, 3.0)
        done = other.wait_status(hash_value, {"done", "failed"})
        assert done["status"] == "done", done
        for f in done["data"]["files"]:
            url = f["url"].replace(c.server.url, other.url)  # the same link, served by the other process
            got = subprocess.run(["curl", "-sS", "--fail", "-o", "-", url], capture_output=True, check=True)
            assert len(got.stdout) == f["bytes"]
        history = other.curl(f"/api/app/separation_history?api_token={token}")["data"]
        assert [h["hash"] for h in history] == [hash_value]
    finally:
        other.stop()


def test_rabbitmq_broker_runs_jobs(tmp_path):
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex(("127.0.0.1", 5672)) != 0:
            pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    with ExitStack() as stack:
        c = Cluster(
            "celery",
            tmp_path,
            stack,
            broker_url="amqp://guest:guest@127.0.0.1:5672//",
            OPENMVSEP_CHUNK_THRESHOLD_SECONDS="3",
            OPENMVSEP_CHUNK_SECONDS="1",
            OPENMVSEP_CHUNK_OVERLAP_SECONDS="0.1",
        )
        token = c.user("p@example.com", credits=10, premium=True)
        c.start_workers()
        hashes = [c.create(token, 1.0), c.create(token, 4.0, "long.flac")]
        for hash_value in hashes:
            assert c.wait(hash_value)["status"] == "done"
        assert [i.kind for i in c.items(hashes[1])].count("chunk") == 4


def test_api_processes_starting_together_on_a_fresh_database(tmp_path):
    """Each process migrates and registers the default synthetic dataset at start; racing ones all come up."""
    import threading

    with postgres_database() as url:
        env = {
            "OPENMVSEP_DATABASE_URL": url,
            "OPENMVSEP_QC_DEFAULT_DATASET_TRACKS": "1",
            "OPENMVSEP_QC_DEFAULT_DATASET_SECONDS": "1",
        }
        servers, errors = [], []

        def start(i: int) -> None:
            try:
                servers.append(Server(tmp_path / f"api{i}" / "data", workers=0, **env))
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            assert errors == [] and len(servers) == 3
            for server in servers:
                datasets = server.curl("/api/quality_checker/datasets")["data"]
                assert [d["dataset_type"] for d in datasets] == [0]
        finally:
            for server in servers:
                server.stop()
