"""HTTP that goes exactly where the address policy said it may.

The host is resolved once, refused unless every address passes the policy, and the connection
then goes to exactly that checked address, so a second, different DNS answer cannot sneak in
("DNS rebinding"). For https the TLS handshake still sends and verifies the original host name
(httpcore's `sni_hostname` request extension), so certificates are checked as usual. Redirects
are followed here, hop by hop, with the same check on every hop.

Not covered here: DNS resolution itself has no timeout of its own (it uses the system resolver), and
`timeout` bounds each connect/read only; a download's overall deadline and minimum rate are pace.py's.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from openmvsep.net.errors import AddressRefused, RemoteFetchError
from openmvsep.net.policy import IPAddress, NetworkPolicy

MAX_REDIRECTS = 5

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "openmvsep-remote-fetch/1"


class PinnedHttp:
    """Sends each request to an address that was resolved and checked just before."""

    def __init__(self, policy: NetworkPolicy, timeout: float) -> None:
        self._policy = policy
        self._client = httpx.Client(
            follow_redirects=False,
            trust_env=False,  # an environment proxy would bypass the address pinning
            verify=policy.verify,
            timeout=httpx.Timeout(timeout),
            # No connection reuse: two host names on one IP must not share a TLS session.
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
        )

    def __enter__(self) -> PinnedHttp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def checked_addresses(self, url: httpx.URL) -> list[IPAddress]:
        """The addresses url's host resolves to; AddressRefused unless all are allowed."""
        if url.scheme not in ("http", "https"):
            raise RemoteFetchError("only http and https links are supported")
        if not url.host:
            raise RemoteFetchError("the link is not a valid URL (no host)")
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = self._policy.resolve(host, port)
        if not addresses:
            raise RemoteFetchError(f"could not resolve the host {url.host}")
        if not all(self._policy.address_allowed(address) for address in addresses):
            raise AddressRefused(f"refusing to download from {url.host}: it is a private or reserved address")
        return addresses

    def send(
        self, method: str, url: httpx.URL, *, content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """One request (no redirects followed); the response is open for streaming."""
        addresses = self.checked_addresses(url)
        host = url.raw_host.decode("ascii")
        request_headers = {"Host": url.netloc.decode("ascii"), **(headers or {})}
        extensions = {}
        if url.scheme == "https" and not _is_ip_literal(host):
            extensions["sni_hostname"] = host  # handshake and certificate check use the real name
        last_error: httpx.ConnectError | None = None
        for address in addresses:  # like a browser: next address when one refuses the connection
            request = self._client.build_request(
                method,
                url.copy_with(host=str(address)),
                content=content,
                headers=request_headers,
                extensions=extensions,
            )
            try:
                return self._client.send(request, stream=True)
            except httpx.ConnectError as error:
                last_error = error
        assert last_error is not None
        raise last_error

    def get_following_redirects(self, url: httpx.URL) -> tuple[httpx.Response, httpx.URL]:
        """GET url, following at most MAX_REDIRECTS redirects; each hop is checked like the first."""
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            response = self.send("GET", current)
            if response.status_code not in _REDIRECT_STATUSES:
                return response, current
            location = response.headers.get("location", "").strip()
            response.close()
            if not location:
                raise RemoteFetchError(f"the remote server answered HTTP {response.status_code} without a target")
            try:
                current = current.join(location)
            except httpx.InvalidURL:
                raise RemoteFetchError("the remote server redirected to an invalid URL") from None
        raise RemoteFetchError(f"too many redirects (more than {MAX_REDIRECTS})")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def to_httpx_url(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise RemoteFetchError("the link is not a valid URL") from None


@contextmanager
def network_errors() -> Iterator[None]:
    """Turn transport failures into short user-facing messages."""
    try:
        yield
    except httpx.ConnectTimeout as error:
        raise RemoteFetchError("connecting to the remote server timed out") from error
    except httpx.TimeoutException as error:
        raise RemoteFetchError("the remote server timed out") from error
    except httpx.ConnectError as error:
        if _caused_by(error, ssl.SSLCertVerificationError):
            raise RemoteFetchError("the remote server's TLS certificate is not valid") from error
        if _caused_by(error, ssl.SSLError):
            raise RemoteFetchError("a secure connection to the remote server failed") from error
        raise RemoteFetchError("could not connect to the remote server") from error
    except httpx.HTTPError as error:
        raise RemoteFetchError("the download failed: the remote server broke the connection") from error


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
