"""One contract for every storage: a local directory, and S3 on a real SeaweedFS server.

The S3 storages list and delete two keys per request and upload anything above 5 MiB in parts, so that the
small files here go through the same pagination and multipart paths large deployments do.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from email.message import Message
from email.utils import collapse_rfc2231_value
from pathlib import Path

import httpx
import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError

from openmvsep.settings import Settings
from openmvsep.store.files import LocalStorage, StorageKeyError, StoredFileMissing
from openmvsep.store.s3 import MiB, S3Storage, attachment_disposition
from openmvsep.store.storage import make_storage

BAD_KEYS = ["../x", "/abs", "a//b", "", "a/../b", "a/", "."]


def s3_storage(seaweedfs, tmp_path: Path, prefix: str = "openmvsep") -> S3Storage:
    bucket = seaweedfs.new_bucket(prefix)
    storage = S3Storage(bucket.name, bucket.prefix, endpoint=bucket.endpoint, scratch_root=tmp_path / "scratch")
    storage.page_size = 2
    storage.multipart_threshold = storage.multipart_chunksize = 5 * MiB
    return storage


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "files", tmp_path / "scratch")
    return s3_storage(request.getfixturevalue("seaweedfs"), tmp_path)


@pytest.fixture
def s3(seaweedfs, tmp_path) -> S3Storage:
    return s3_storage(seaweedfs, tmp_path)


def make_file(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def read_all(storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(storage.read(key, start, end))


def test_put_copies_or_moves_and_reports_size(storage, tmp_path):
    data = os.urandom(3000)
    source = make_file(tmp_path / "in", "a.bin", data)

    assert storage.put_file("temp/copy.bin", source, move=False) == 3000
    assert source.read_bytes() == data
    assert storage.put_file("processed/moved.bin", source) == 3000
    assert not source.exists()

    assert storage.exists("temp/copy.bin") and storage.exists("processed/moved.bin")
    assert storage.size("temp/copy.bin") == storage.size("processed/moved.bin") == 3000
    assert read_all(storage, "processed/moved.bin") == data
    assert not storage.exists("temp/none.bin")
    assert storage.size("temp/none.bin") is None


def test_put_replaces_an_existing_file(storage, tmp_path):
    storage.put_file("temp/a", make_file(tmp_path, "1", b"first version"))
    storage.put_file("temp/a", make_file(tmp_path, "2", b"second"))
    assert read_all(storage, "temp/a") == b"second"
    assert storage.size("temp/a") == 6


def test_local_file_gives_the_contents_or_raises_missing(storage, tmp_path):
    data = os.urandom(5000)
    storage.put_file("work/job/in.wav", make_file(tmp_path, "in.wav", data))
    with storage.local_file("work/job/in.wav") as path:
        assert path.read_bytes() == data
        assert path.name == "in.wav"  # decoders look at the extension
    with pytest.raises(StoredFileMissing):
        with storage.local_file("work/job/none.wav"):
            pass


def test_s3_local_file_is_a_scratch_copy_removed_after(s3, tmp_path):
    s3.put_file("temp/x.flac", make_file(tmp_path, "x.flac", b"flac bytes"))
    with s3.local_file("temp/x.flac") as path:
        assert path.is_relative_to(s3.scratch.root)
        folder = path.parent
    assert not folder.exists()
    with pytest.raises(StoredFileMissing):
        with s3.local_file("temp/none.flac"):
            pass
    assert list(s3.scratch.root.iterdir()) == []  # the failed download left no folder either


def test_read_ranges(storage, tmp_path):
    data = os.urandom(3 * MiB + 123)
    size = len(data)
    storage.put_file("processed/big.bin", make_file(tmp_path, "big.bin", data))

    blocks = list(storage.read("processed/big.bin"))
    assert b"".join(blocks) == data
    assert len(blocks) > 1 and max(len(b) for b in blocks) <= MiB  # streamed, not read whole
    assert read_all(storage, "processed/big.bin", 10, 20) == data[10:20]
    assert read_all(storage, "processed/big.bin", 0, 1) == data[:1]
    assert read_all(storage, "processed/big.bin", MiB - 5) == data[MiB - 5 :]
    assert read_all(storage, "processed/big.bin", 0, MiB + 7) == data[: MiB + 7]
    assert read_all(storage, "processed/big.bin", size - 3, size + 100) == data[-3:]  # end past the end
    assert read_all(storage, "processed/big.bin", size) == b""
    assert read_all(storage, "processed/big.bin", size + 10) == b""
    assert read_all(storage, "processed/big.bin", 50, 50) == b""
    with pytest.raises(StoredFileMissing):
        read_all(storage, "processed/none.bin")
    with pytest.raises(StoredFileMissing):
        read_all(storage, "processed/none.bin", 5, 5)


def test_read_an_empty_file(storage, tmp_path):
    storage.put_file("temp/empty", make_file(tmp_path, "empty", b""))
    assert storage.size("temp/empty") == 0
    assert read_all(storage, "temp/empty") == b""
    assert read_all(storage, "temp/empty", 0, 10) == b""


def test_delete_and_delete_prefix(storage, tmp_path):
    keys = ["work/a/1", "work/a/b/2", "work/a/b/c/3", "work/a/b/c/4", "work/a/5", "work/ab/6", "work/z"]
    for i, key in enumerate(keys):
        storage.put_file(key, make_file(tmp_path, str(i), key.encode()))

    storage.delete_prefix("work/a")  # five files, three list pages on S3
    assert [k for k in keys if storage.exists(k)] == ["work/ab/6", "work/z"]  # `work/ab` is not in `work/a`
    storage.delete_prefix("work/a")  # nothing left there: fine
    storage.delete_prefix("work/none")

    storage.delete("work/z")
    storage.delete("work/z")  # already gone: fine
    assert not storage.exists("work/z")
    assert storage.exists("work/ab/6")


def test_copy_makes_a_file_that_outlives_its_source(storage, tmp_path):
    data = os.urandom(6 * MiB + 3)  # above the S3 storages' 5 MiB part size: the copy is made in parts
    storage.put_file("processed/aaa/first.wav", make_file(tmp_path, "a", data))
    assert storage.copy("processed/aaa/first.wav", "processed/bbb/second.wav") == len(data)
    assert read_all(storage, "processed/bbb/second.wav") == data
    storage.put_file("processed/aaa/first.wav", make_file(tmp_path, "b", b"new"))  # replaced, never written through
    assert read_all(storage, "processed/bbb/second.wav") == data
    storage.delete("processed/aaa/first.wav")
    assert read_all(storage, "processed/bbb/second.wav") == data
    with pytest.raises(StoredFileMissing):
        storage.copy("processed/aaa/first.wav", "processed/ccc/third.wav")
    assert not storage.exists("processed/ccc/third.wav")
    assert [k for k, _ in storage.list("processed")] == ["processed/bbb/second.wav"]  # no part file left behind


def test_local_copy_is_a_hard_link(tmp_path):
    storage = LocalStorage(tmp_path / "files", tmp_path / "scratch")
    storage.put_file("processed/aaa/x.wav", make_file(tmp_path, "x", b"bytes"))
    storage.copy("processed/aaa/x.wav", "processed/bbb/x.wav")
    assert storage.path("processed/aaa/x.wav").stat().st_ino == storage.path("processed/bbb/x.wav").stat().st_ino


def test_list_gives_keys_and_mtimes_under_a_folder(storage, tmp_path):
    keys = {
        "processed/x.wav",
        "processed/y.mp3",
        "processed/sub/z.flac",
        "processed/sub/deeper/w.ogg",
        "processed/v.wav",
    }
    for i, key in enumerate(sorted(keys)):
        storage.put_file(key, make_file(tmp_path, str(i), b"data"))
    storage.put_file("processedX/outside", make_file(tmp_path, "o", b"data"))
    storage.put_file("temp/outside", make_file(tmp_path, "t", b"data"))

    listed = dict(storage.list("processed"))
    assert set(listed) == keys  # storage keys, without the S3 prefix, from every page
    assert set(dict(storage.list("processed/sub"))) == {"processed/sub/z.flac", "processed/sub/deeper/w.ogg"}
    now = time.time()
    assert all(abs(mtime - now) < 600 for mtime in listed.values())  # epoch seconds, not e.g. milliseconds
    assert list(storage.list("nothing")) == []


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(storage, tmp_path, key):
    source = make_file(tmp_path, "f", b"x")
    with pytest.raises(StorageKeyError):
        storage.put_file(key, source)
    assert source.exists()  # a refused put takes nothing
    with pytest.raises(StorageKeyError):
        with storage.local_file(key):
            pass
    with pytest.raises(StorageKeyError):
        read_all(storage, key)
    with pytest.raises(StorageKeyError):
        list(storage.list(key))
    with pytest.raises(StorageKeyError):
        storage.delete_prefix(key)
    assert not storage.exists(key)
    assert storage.size(key) is None
    storage.delete(key)  # nothing such can exist, so nothing to do


def test_multipart_upload_of_a_large_file(storage, tmp_path):
    data = os.urandom(12 * MiB + 17)
    source = make_file(tmp_path, "big.wav", data)
    assert storage.put_file("processed/big.wav", source, move=False) == len(data)
    assert storage.size("processed/big.wav") == len(data)
    with storage.local_file("processed/big.wav") as path:
        assert path.read_bytes() == data
    assert read_all(storage, "processed/big.wav", 5 * MiB - 3, 5 * MiB + 3) == data[5 * MiB - 3 : 5 * MiB + 3]
    if isinstance(storage, S3Storage):
        head = storage.client.head_object(Bucket=storage.bucket, Key=f"{storage.prefix}/processed/big.wav")
        assert head["ETag"].strip('"').endswith("-3")  # a multipart object's ETag counts its parts


def disposition_filename(header: str) -> str | None:
    """The filename a browser saves under: RFC 6266 prefers `filename*` (RFC 5987) over `filename`."""
    message = Message()
    message["content-disposition"] = header
    params = message.get_params(header="content-disposition")[1:]
    extended = [value for name, value in params if name == "filename" and isinstance(value, tuple)]
    return collapse_rfc2231_value(extended[0]) if extended else message.get_filename()


@pytest.mark.parametrize("filename", ["song (vocals).wav", "Bjørk – Jóga [instrumental].flac", 'a"b\\c.mp3'])
def test_presigned_url_downloads_the_bytes_under_the_filename(storage, tmp_path, filename):
    data = os.urandom(4000)
    storage.put_file("processed/abc.bin", make_file(tmp_path, "abc.bin", data))
    url = storage.presigned_url("processed/abc.bin", filename, 300)
    if isinstance(storage, LocalStorage):
        assert url is None  # the server streams local files itself
        return
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert disposition_filename(response.headers["content-disposition"]) == filename
    assert response.headers["content-disposition"].startswith("attachment;")

    forged = url.replace("processed/abc.bin", "processed/abd.bin")
    assert httpx.get(forged).status_code == 403  # the signature covers the key


def test_attachment_disposition_keeps_ascii_plain():
    assert attachment_disposition("song.wav") == 'attachment; filename="song.wav"'
    assert attachment_disposition("é.wav") == "attachment; filename=\"_.wav\"; filename*=UTF-8''%C3%A9.wav"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_scratch_folders_are_per_process_and_dead_ones_are_swept(storage):
    mine = storage.scratch_dir()
    other_mine = storage.scratch_dir()
    assert mine != other_mine and mine.is_dir() and other_mine.is_dir()
    host = socket.gethostname()
    assert mine.name.startswith(f"{host}-{os.getpid()}-")
    root = mine.parent

    dead = root / f"{host}-{dead_pid()}-leftover"
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "half.wav").write_bytes(b"x")
    other_host = root / f"elsewhere-{dead_pid()}-theirs"  # another machine's process: not ours to judge
    other_host.mkdir()

    assert storage.sweep_dead_scratch() == 1
    assert not dead.exists()
    assert mine.is_dir() and other_mine.is_dir() and other_host.is_dir()


def test_sweep_aborts_stale_multipart_uploads_under_the_prefix(s3):
    mine = s3.client.create_multipart_upload(Bucket=s3.bucket, Key=f"{s3.prefix}/temp/killed.wav")
    theirs = s3.client.create_multipart_upload(Bucket=s3.bucket, Key="someone-else/file")

    def pending() -> set[str]:
        return {u["UploadId"] for u in s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])}

    assert s3.sweep_dead_scratch() == 0  # a fresh upload may be some live process's
    assert pending() == {mine["UploadId"], theirs["UploadId"]}
    s3.stale_upload_seconds = 0
    assert s3.sweep_dead_scratch() == 1
    assert pending() == {theirs["UploadId"]}


def test_s3_storage_at_the_bucket_root(seaweedfs, tmp_path):
    storage = s3_storage(seaweedfs, tmp_path, prefix="")
    storage.put_file("temp/a.wav", make_file(tmp_path, "a.wav", b"abc"))
    assert storage.client.head_object(Bucket=storage.bucket, Key="temp/a.wav")["ContentLength"] == 3
    assert [k for k, _ in storage.list("temp")] == ["temp/a.wav"]
    storage.delete_prefix("temp")
    assert not storage.exists("temp/a.wav")


def test_ensure_bucket_creates_a_missing_bucket_once(seaweedfs, tmp_path):
    bucket = seaweedfs.new_bucket()
    storage = S3Storage(bucket.name + "-new", "p", endpoint=bucket.endpoint, scratch_root=tmp_path)
    with pytest.raises(ClientError):  # a missing bucket is an error, not a missing file
        read_all(storage, "temp/a")
    with pytest.raises((ClientError, S3UploadFailedError)):  # boto3's transfer manager wraps the ClientError
        storage.put_file("temp/a", make_file(tmp_path, "a", b"abc"))
    assert storage.ensure_bucket() is True
    assert storage.ensure_bucket() is False
    storage.put_file("temp/a", make_file(tmp_path, "a", b"abc"))
    assert read_all(storage, "temp/a") == b"abc"


def test_make_storage_picks_the_class_from_settings(seaweedfs, tmp_path):
    local = make_storage(Settings(data_dir=tmp_path / "data"))
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "data" / "storage").resolve()
    elsewhere = make_storage(Settings(data_dir=tmp_path / "data", storage_url=str(tmp_path / "files")))
    assert isinstance(elsewhere, LocalStorage) and elsewhere.root == (tmp_path / "files").resolve()

    bucket = seaweedfs.new_bucket("deploy/one")
    s3 = make_storage(Settings(data_dir=tmp_path / "data", **bucket.settings()))
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.scratch.root) == (bucket.name, "deploy/one", tmp_path / "data" / "scratch")
    s3.put_file("temp/a", make_file(tmp_path, "a", b"through settings"))  # endpoint and AWS_* credentials work
    assert read_all(s3, "temp/a") == b"through settings"
    assert s3.client.head_object(Bucket=bucket.name, Key="deploy/one/temp/a")["ContentLength"] == 16

    root = make_storage(
        Settings(data_dir=tmp_path / "data", storage_url=f"s3://{bucket.name}", s3_endpoint=bucket.endpoint)
    )
    assert isinstance(root, S3Storage) and root.prefix == ""
    assert read_all(root, "deploy/one/temp/a") == b"through settings"
