"""Every URL in an answer is absolute and reachable by the client: built from the configured public URL, else from
the address the request reached (its scheme, Host and path prefix, as trusted proxies state them: api/forwarded.py),
or a presigned link to the store itself when so configured."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from openmvsep.settings import Settings
from openmvsep.store.files import Storage

# What a base taken from a request may look like: http(s), a host name or IP literal with an optional port, and a
# path prefix of plain path characters. Anything else (a Host header with '@', '/', spaces...) is not used.
_BASE = re.compile(
    r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*",
    re.ASCII,
)
MAX_BASE_CHARS = 512  # jobs.link_base's width


def checked_base(url: str | None) -> str | None:
    """`url` without its trailing slash when it is a plausible base for links, else None."""
    if not url:
        return None
    base = url.rstrip("/")
    return base if len(base) <= MAX_BASE_CHARS and _BASE.fullmatch(base) else None


class Links:
    def __init__(self, settings: Settings, storage: Storage, base: str | None = None):
        """`base`: where the request reached this server (checked_base); the configured public URL wins over it."""
        self.settings, self.storage = settings, storage
        self.base = settings.public_url.rstrip("/") or checked_base(base) or settings.effective_public_url

    def at(self, base: str | None) -> Links:
        """These links as seen by a request that reached this server at `base`."""
        return Links(self.settings, self.storage, base)

    @property
    def host(self) -> str | None:
        """The base's host name (no port), as MVSep names an input's download after its site."""
        return urlsplit(self.base).hostname

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def file(self, key: str, download: str) -> str:
        """Where a client downloads a stored file: the store itself (signed) when so configured, else here."""
        if self.settings.presigned_urls:
            signed = self.storage.presigned_url(key, download, self.settings.presigned_url_seconds)
            if signed:
                return signed
        return self.url(f"/storage/{key}")

    def status(self, hash_value: str) -> str:
        return self.url(f"/api/separation/get?hash={quote(hash_value, safe='')}")
