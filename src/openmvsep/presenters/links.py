"""Every URL in an answer is absolute and reachable by the client: built from the configured public URL, or
a presigned link to the store itself when so configured."""

from __future__ import annotations

from urllib.parse import quote

from openmvsep.settings import Settings
from openmvsep.store.files import Storage


class Links:
    def __init__(self, settings: Settings, storage: Storage):
        self.settings, self.storage = settings, storage

    def url(self, path: str) -> str:
        return f"{self.settings.effective_public_url}{path}"

    def file(self, key: str, download: str) -> str:
        """Where a client downloads a stored file: the store itself (signed) when so configured, else here."""
        if self.settings.presigned_urls:
            signed = self.storage.presigned_url(key, download, self.settings.presigned_url_seconds)
            if signed:
                return signed
        return self.url(f"/storage/{key}")

    def status(self, hash_value: str) -> str:
        return self.url(f"/api/separation/get?hash={quote(hash_value, safe='')}")
