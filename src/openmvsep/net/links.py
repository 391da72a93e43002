"""What a user's link points at: share links of Dropbox and Google Drive become direct downloads,
and MEGA links are split into the file handle and the key that decrypts it.

Only the text of the link is read here; nothing is contacted.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from openmvsep.net.errors import RemoteFetchError

REMOTE_TYPES = ("direct", "dropbox", "drive", "mega")


def direct_url(url: str, remote_type: str) -> str:
    """The URL to download for a user's link: Dropbox and Drive share links become direct downloads."""
    if remote_type not in REMOTE_TYPES:
        raise RemoteFetchError(f"unknown remote_type {remote_type!r}; use one of: {', '.join(REMOTE_TYPES)}")
    parts = split_http_url(url)
    if remote_type == "dropbox":
        return _dropbox_direct_url(parts)
    if remote_type == "drive":
        return _drive_direct_url(parts)
    if remote_type == "mega":
        parse_mega_link(url)  # validates; MEGA links are resolved through its API when fetched
    return url.strip()


def split_http_url(url: str) -> SplitResult:
    """urlsplit() of an absolute http(s) URL, or RemoteFetchError."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except (ValueError, AttributeError):
        raise RemoteFetchError("the link is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise RemoteFetchError("only http and https links are supported")
    if not parts.hostname:
        raise RemoteFetchError("the link is not a valid URL (no host)")
    return parts


def _host_matches(hostname: str, domain: str) -> bool:
    hostname = hostname.lower().rstrip(".")
    return hostname == domain or hostname.endswith("." + domain)


# --------------------------------------------------------------------------- Dropbox, Google Drive


def _dropbox_direct_url(parts: SplitResult) -> str:
    hostname = parts.hostname or ""
    if not (_host_matches(hostname, "dropbox.com") or _host_matches(hostname, "dropboxusercontent.com")):
        raise RemoteFetchError("not a Dropbox link")
    if _host_matches(hostname, "dropboxusercontent.com"):
        return urlunsplit(parts)  # already the content server
    query = parse_qsl(parts.query, keep_blank_values=True)
    if ("raw", "1") in query:
        return urlunsplit(parts)  # raw=1 is also a direct download
    # dl=0 (the share default) shows a preview page; dl=1 answers with the file itself.
    query = [(key, value) for key, value in query if key != "dl"] + [("dl", "1")]
    return urlunsplit(parts._replace(scheme="https", query=urlencode(query)))


_DRIVE_ID = re.compile(r"[A-Za-z0-9_-]{10,}")
_DRIVE_PATH_ID = re.compile(r"/(?:file/)?d/([A-Za-z0-9_-]{10,})(?:/|$)")


def _drive_direct_url(parts: SplitResult) -> str:
    hostname = parts.hostname or ""
    if not (
        _host_matches(hostname, "drive.google.com")
        or _host_matches(hostname, "docs.google.com")
        or _host_matches(hostname, "drive.usercontent.google.com")
    ):
        raise RemoteFetchError("not a Google Drive link")
    query = dict(parse_qsl(parts.query))
    path_match = _DRIVE_PATH_ID.search(parts.path)  # /file/d/<id>/view, /d/<id>/edit, ...
    file_id = path_match.group(1) if path_match else query.get("id", "")
    if not _DRIVE_ID.fullmatch(file_id):
        raise RemoteFetchError("the Google Drive link has no file id")
    # confirm=t skips the "can't scan this file for viruses" page that large files get.
    direct = {"id": file_id, "export": "download", "confirm": "t"}
    if query.get("resourcekey"):  # links made before 2021 need it to be readable
        direct["resourcekey"] = query["resourcekey"]
    return "https://drive.usercontent.google.com/download?" + urlencode(direct)


# --------------------------------------------------------------------------- MEGA


@dataclass(frozen=True)
class MegaLink:
    handle: str
    key: bytes  # the 32-byte file key from the link


_MEGA_HANDLE = re.compile(r"[A-Za-z0-9_-]{8}")
_MEGA_KEY = re.compile(r"[A-Za-z0-9_-]{43,44}={0,2}")


def parse_mega_link(url: str) -> MegaLink:
    """https://mega.nz/file/<handle>#<key> or the old https://mega.nz/#!<handle>!<key>."""
    parts = split_http_url(url)
    if not (_host_matches(parts.hostname or "", "mega.nz") or _host_matches(parts.hostname or "", "mega.co.nz")):
        raise RemoteFetchError("not a MEGA link")
    if parts.path.startswith("/folder/") or parts.fragment.startswith("F!"):
        raise RemoteFetchError("MEGA folder links are not supported; link to a single file")
    file_path = re.fullmatch(r"/file/([^/]+)/?", parts.path)
    if file_path:
        handle, key = file_path.group(1), parts.fragment.split("/", 1)[0]
    elif parts.fragment.startswith("!") and parts.fragment.count("!") >= 2:
        _empty, handle, key = parts.fragment.split("!", 2)
    else:
        raise RemoteFetchError("not a MEGA file link")
    if not _MEGA_HANDLE.fullmatch(handle):
        raise RemoteFetchError("the MEGA link has an invalid file handle")
    if not _MEGA_KEY.fullmatch(key):
        raise RemoteFetchError("the MEGA link has no valid key (the part after '#')")
    return MegaLink(handle=handle, key=b64url_decode(key))


def b64url_decode(text: str) -> bytes:
    """MEGA's URL-safe base64, which drops the '=' padding."""
    text = text.rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
