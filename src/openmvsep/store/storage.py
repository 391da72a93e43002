"""Which storage this server uses: a local directory, or an S3-compatible store (`s3://bucket/prefix`)."""

from __future__ import annotations

from openmvsep.settings import Settings
from openmvsep.store.files import LocalStorage, Storage


def make_storage(settings: Settings) -> Storage:
    if settings.storage_url.startswith("s3://"):
        from openmvsep.store.s3 import S3Storage

        bucket, _, prefix = settings.storage_url.removeprefix("s3://").partition("/")
        return S3Storage(
            bucket,
            prefix,
            endpoint=settings.s3_endpoint or None,
            region=settings.s3_region,
            scratch_root=settings.scratch_root,
        )
    return LocalStorage(settings.storage_dir, settings.scratch_root)
