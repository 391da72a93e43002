"""Download the file behind a user's link (direct, Dropbox, Google Drive or MEGA) into a folder.

A URL job's get-remote stage hands the link here. Share links become direct downloads, MEGA
files are decrypted on the way in, and every request goes through the pinned client, so the
address policy holds on every redirect hop. An overall deadline and a minimum rate (pace.py) keep a
server that trickles bytes from holding the worker. Any failure is a RemoteFetchError with a short
message for the user, and leaves no partial file behind.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import httpx

from openmvsep.net.errors import RemoteFetchError
from openmvsep.net.files import FetchedFile, response_filename, too_large, write_chunks
from openmvsep.net.links import direct_url
from openmvsep.net.mega import DEFAULT_MEGA_API_URL, fetch_mega
from openmvsep.net.pace import Pace
from openmvsep.net.pinned import PinnedHttp, network_errors, to_httpx_url
from openmvsep.net.policy import NetworkPolicy, default_policy


def fetch(
    url: str,
    remote_type: str,
    dest_dir: Path,
    *,
    max_bytes: int,
    timeout: float,
    allow_private: bool = False,
    mega_api_url: str = DEFAULT_MEGA_API_URL,
    pace: Pace | None = None,
) -> FetchedFile:
    """Download the file behind a user's link into dest_dir (RemoteFetchError on any failure).

    `timeout` bounds each connect and read; `pace` the whole download (a deadline, a minimum rate)."""
    return fetch_with_policy(
        url,
        remote_type,
        Path(dest_dir),
        max_bytes=max_bytes,
        timeout=timeout,
        policy=default_policy(allow_private),
        mega_api_url=mega_api_url,
        pace=pace,
    )


def fetch_with_policy(
    url: str,
    remote_type: str,
    dest_dir: Path,
    *,
    max_bytes: int,
    timeout: float,
    policy: NetworkPolicy,
    mega_api_url: str = DEFAULT_MEGA_API_URL,
    pace: Pace | None = None,
) -> FetchedFile:
    """fetch() with an explicit NetworkPolicy (address check, resolver, TLS verification)."""
    pace = pace or Pace()
    target = direct_url(url, remote_type)
    with PinnedHttp(policy, pace.read_timeout(timeout)) as http, network_errors():
        if remote_type == "mega":
            return fetch_mega(http, target, dest_dir, max_bytes, mega_api_url, pace)
        response, final_url = http.get_following_redirects(to_httpx_url(target))
        with closing(response):
            _check_download_response(response, max_bytes)
            filename = response_filename(response, final_url, use_url_path=remote_type != "drive")
            # iter_bytes() without a size: each piece as it arrives, so that the pace sees every one
            return write_chunks(pace.paced(response.iter_bytes()), dest_dir, filename, max_bytes)


def _check_download_response(response: httpx.Response, max_bytes: int) -> None:
    status = response.status_code
    if status >= 400:
        raise RemoteFetchError(f"the remote server answered HTTP {status}")
    if not 200 <= status < 300:
        raise RemoteFetchError(f"the remote server answered HTTP {status} instead of the file")
    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in ("text/html", "application/xhtml+xml"):
        # Typical for share pages, login walls and Drive's virus-scan warning.
        raise RemoteFetchError("the link leads to a web page, not to a file: use a direct download link")
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
