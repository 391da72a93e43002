"""Requests that came through a reverse proxy: who the client is, and which URL it asked for.

A proxy connects from its own address to wherever this server listens, and states what its client asked for in
X-Forwarded-* headers. Anyone can send those headers, so they are believed only when the connection comes from an
address in OPENMVSEP_TRUSTED_PROXIES; from anyone else they change nothing. From a trusted peer:

- X-Forwarded-For and X-Forwarded-Proto: the client's address (what the rate limits count) and the scheme, by
  uvicorn's ProxyHeadersMiddleware (the well-kept implementation: it walks the address chain from the nearest
  hop and stops at the first one it does not trust);
- X-Forwarded-Host: the Host the client asked for;
- X-Forwarded-Prefix: the path the proxy publishes this server under (e.g. /mvsep), kept as the ASGI `root_path`,
  whether or not the proxy strips it from the path it forwards.

With no OPENMVSEP_PUBLIC_URL, the links in every answer follow `request.base_url` (scheme, host, root_path), so
they name the address the client used. Where a header holds a list (one value per proxy), the last value is the
one the nearest proxy, the trusted one, added.

`serve` runs uvicorn with its own proxy handling off, so the server's trust list and this one cannot disagree.
"""

from __future__ import annotations

import ipaddress
import re

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?", re.ASCII)
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+", re.ASCII)
MAX_HEADER_CHARS = 255


class TrustedPeers:
    """The addresses and networks of a trusted_proxies setting ("*": every peer)."""

    def __init__(self, setting: str):
        entries = [e.strip() for e in setting.split(",") if e.strip()]
        self.everyone = "*" in entries
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]

    def __contains__(self, address: str | None) -> bool:
        if self.everyone:
            return True
        if not address or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:  # a Unix socket's peer, or no address at all
            return False
        return any(ip in network for network in self.networks)


def _last(scope: Scope, name: bytes) -> str | None:
    """The last value the header carries, across repeated headers and comma-separated lists."""
    values = [v for k, v in scope["headers"] if k == name]
    if not values:
        return None
    last = values[-1].decode("latin-1").split(",")[-1].strip()
    return last if 0 < len(last) <= MAX_HEADER_CHARS else None


def forwarded_scope(scope: Scope) -> Scope:
    """`scope` as the client addressed it: X-Forwarded-Host as its Host, X-Forwarded-Prefix as its root_path.
    A value that is not a plain host or path is ignored."""
    host = _last(scope, b"x-forwarded-host")
    prefix = _last(scope, b"x-forwarded-prefix")
    if host is not None and not _HOST.fullmatch(host):
        host = None
    if prefix is not None:
        prefix = prefix.rstrip("/")
        if not _PREFIX.fullmatch(prefix):
            prefix = None
    if host is None and prefix is None:
        return scope
    scope = dict(scope)
    if host is not None:
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"] + [(b"host", host.encode())]
    if prefix is not None:
        scope["root_path"] = prefix
    return scope


class ForwardedHeaders:
    """ASGI middleware: the X-Forwarded-* headers of trusted peers applied to the request (see the module)."""

    def __init__(self, app: ASGIApp, trusted: str):
        self.app = app
        self.trusted = TrustedPeers(trusted)
        # The same list: it finds the client in X-Forwarded-For by skipping the trusted hops from the right.
        hosts: list[str] | str = "*" if self.trusted.everyone else [str(n) for n in self.trusted.networks]
        self.proxied = ProxyHeadersMiddleware(app, trusted_hosts=hosts)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if client and client[0] in self.trusted:
                await self.proxied(forwarded_scope(scope), receive, send)  # type: ignore[arg-type]
                return
        await self.app(scope, receive, send)
