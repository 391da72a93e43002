"""POST a body to a user-given URL (webhooks), under the same address policy as downloads."""

from __future__ import annotations

from collections.abc import Mapping

from openmvsep.net.links import split_http_url
from openmvsep.net.pinned import PinnedHttp, network_errors, to_httpx_url
from openmvsep.net.policy import default_policy


def post_body(url: str, body: bytes, *, headers: Mapping[str, str], timeout: float, allow_private: bool = False) -> int:
    """POST exactly `body` (what a signature covers) and return the answer's status; RemoteFetchError when it
    cannot be sent."""
    target = to_httpx_url(split_http_url(url).geturl())
    with PinnedHttp(default_policy(allow_private), timeout) as http, network_errors():
        response = http.send("POST", target, content=body, headers=dict(headers))
        response.close()
        return response.status_code
