"""Storage in an S3-compatible object store (AWS S3, SeaweedFS, MinIO, ...), under `s3://bucket/prefix`.

A key `processed/x.wav` is the object `<prefix>/processed/x.wav`. Uploads go through boto3's transfer manager,
which switches to a multipart upload above `multipart_threshold`; an object only appears once its upload
completes, so no reader sees half a file. A process killed mid-upload leaves an incomplete multipart upload
behind (invisible, but billed): `sweep_dead_scratch` aborts those older than `stale_upload_seconds` (an hour),
longer than a live process takes to upload a file.
Credentials come from boto3's usual chain (AWS_* variables, shared files, instance roles).
"""

from __future__ import annotations

import mimetypes
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from openmvsep.store.files import Scratch, StorageKeyError, StoredFileMissing, check_key

MiB = 1024 * 1024
READ_BLOCK = MiB
MAX_PRESIGNED_SECONDS = 7 * 24 * 3600
# HeadObject answers a bare 404 (no body to carry a code); GetObject says NoSuchKey.
MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
MISSING_BUCKET_CODES = {"404", "NoSuchBucket", "NotFound"}


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def attachment_disposition(filename: str) -> str:
    """`Content-Disposition: attachment` naming `filename`: a plain ASCII fallback for old clients, and the
    exact name in RFC 5987 form (`filename*=UTF-8''...`) when it is not plain ASCII."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename) or "download"
    disposition = f'attachment; filename="{fallback}"'
    if fallback != filename:
        disposition += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return disposition


class S3Storage:
    multipart_threshold = 64 * MiB  # files above this are uploaded in parts
    multipart_chunksize = 16 * MiB  # S3's smallest part is 5 MiB, its most parts 10,000 (160 GB here)
    page_size = 1000  # keys per list request; S3 returns at most 1000
    stale_upload_seconds = 3600.0  # an incomplete multipart upload older than this was left by a dead process

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = "us-east-1",
        scratch_root: Path,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.region = region or None
        self.scratch = Scratch(scratch_root)
        # Path-style addressing (`endpoint/bucket/key`) is what self-hosted stores serve without wildcard DNS;
        # on AWS itself boto3 picks the virtual-hosted style it prefers.
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint else "auto"},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=16,
        )
        # A session per storage: the default session is shared module state and not thread-safe to create.
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint or None, region_name=self.region, config=config
        )

    def _object(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _folder(self, prefix: str) -> str:
        return self._object(prefix) + "/"

    def _key(self, object_name: str) -> str:
        return object_name[len(self.prefix) + 1 :] if self.prefix else object_name

    def _transfer(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=4,
        )

    def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; True when it was created."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return False
        except ClientError as e:
            if error_code(e) not in MISSING_BUCKET_CODES:
                raise
        options = {}
        if self.region and self.region != "us-east-1":  # AWS refuses an explicit us-east-1 constraint
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(Bucket=self.bucket, **options)
        except ClientError as e:
            if error_code(e) != "BucketAlreadyOwnedByYou":  # another process created it meanwhile
                raise
            return False
        return True

    def put_file(self, key: str, source: Path, *, move: bool = True) -> int:
        name = self._object(key)
        size = Path(source).stat().st_size
        self.client.upload_file(str(source), self.bucket, name, Config=self._transfer())
        if move:
            Path(source).unlink(missing_ok=True)
        return size

    def copy(self, source_key: str, key: str) -> int:
        """A copy made inside the store (CopyObject; in parts above `multipart_threshold`, as S3 copies one
        request at most 5 GB): no byte passes through this process."""
        source = {"Bucket": self.bucket, "Key": self._object(source_key)}
        name = self._object(key)
        try:
            self.client.copy(source, self.bucket, name, Config=self._transfer())
        except ClientError as e:
            if error_code(e) in MISSING_CODES:
                raise StoredFileMissing(f"stored file {source_key} is missing") from e
            raise
        size = self.size(key)
        if size is None:  # the store said the copy succeeded; a missing result is the store's fault, not ours
            raise OSError(f"S3 reported {key} copied but has no such object")
        return size

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        name = self._object(key)
        folder = self.scratch.new()
        try:
            path = folder / PurePosixPath(key).name
            try:
                self.client.download_file(self.bucket, name, str(path), Config=self._transfer())
            except ClientError as e:
                if error_code(e) in MISSING_CODES:
                    raise StoredFileMissing(f"stored file {key} is missing") from e
                raise
            yield path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def size(self, key: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except StorageKeyError:
            return None
        except ClientError as e:
            if error_code(e) in MISSING_CODES:
                return None
            raise
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The request is made here, so a missing file raises before the first block is asked for."""
        name = self._object(key)
        if end is not None and end <= start:
            if self.size(key) is None:
                raise StoredFileMissing(f"stored file {key} is missing")
            return iter(())
        request = {"Bucket": self.bucket, "Key": name}
        if start > 0 or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(**request)["Body"]
        except ClientError as e:
            if error_code(e) in MISSING_CODES:
                raise StoredFileMissing(f"stored file {key} is missing") from e
            if error_code(e) == "InvalidRange":  # starts at or past the end: nothing to read, as from a file
                return iter(())
            raise
        return _blocks(body)

    def delete(self, key: str) -> None:
        try:
            name = self._object(key)
        except StorageKeyError:
            return
        self.client.delete_object(Bucket=self.bucket, Key=name)  # S3 answers success for a missing key

    def _names_under(self, folder: str) -> Iterator[dict]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder, PaginationConfig={"PageSize": self.page_size}
        )
        for page in pages:
            yield page.get("Contents", [])

    def delete_prefix(self, prefix: str) -> None:
        for contents in self._names_under(self._folder(prefix)):
            # One DeleteObjects per page: a page holds at most 1000 keys, the request's limit.
            if not contents:
                continue
            result = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": c["Key"]} for c in contents], "Quiet": True}
            )
            errors = [e for e in result.get("Errors", []) if e.get("Code") not in MISSING_CODES]
            if errors:
                first = errors[0]
                raise OSError(
                    f"S3 refused to delete {len(errors)} objects under {prefix!r}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        for contents in self._names_under(self._folder(prefix)):
            for c in contents:
                yield self._key(c["Key"]), c["LastModified"].timestamp()

    def presigned_url(self, key: str, filename: str, seconds: int) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": self._object(key),
            "ResponseContentDisposition": attachment_disposition(filename),
        }
        content_type, _ = mimetypes.guess_type(filename)
        if content_type:
            params["ResponseContentType"] = content_type
        # SigV4 signatures live at most a week; a longer request would give a URL S3 refuses outright.
        return self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=min(int(seconds), MAX_PRESIGNED_SECONDS)
        )

    def scratch_dir(self) -> Path:
        return self.scratch.new()

    def sweep_dead_scratch(self) -> int:
        """Dead processes' scratch folders, and multipart uploads under the prefix nobody will complete."""
        return self.scratch.sweep_dead() + self._abort_stale_uploads()

    def _abort_stale_uploads(self) -> int:
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=self.stale_upload_seconds)
        listing = {"Bucket": self.bucket}
        if self.prefix:
            listing["Prefix"] = self.prefix + "/"
        aborted = 0
        for page in self.client.get_paginator("list_multipart_uploads").paginate(**listing):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] > cutoff:
                    continue
                try:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                except ClientError as e:
                    if error_code(e) != "NoSuchUpload":  # completed or aborted by another process meanwhile
                        raise
                    continue
                aborted += 1
        return aborted


def _blocks(body) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(READ_BLOCK)
    finally:
        body.close()
