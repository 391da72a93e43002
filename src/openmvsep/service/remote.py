"""Download the input of a URL job (`separation/create` with `url` + `remote_type`).

The get-remote stage hands a user-supplied link to `fetch`, which turns share links into direct
downloads (Dropbox, Google Drive), decrypts MEGA files, and streams the bytes into a file.

Because the URL comes from an API user, every request is guarded against server-side request
forgery: the host is resolved once, refused if any address is private/loopback/reserved, and the
connection then goes to exactly that checked address (so a second, different DNS answer cannot
sneak in — "DNS rebinding"). For https the TLS handshake still sends and verifies the original host
name (httpcore's `sni_hostname` request extension), so certificates are checked as usual.
Redirects are followed here, hop by hop, with the same check on every hop.

Not covered: DNS resolution itself has no timeout of its own (it uses the system resolver), and
there is no overall deadline — `timeout` bounds each connect/read, so a server trickling bytes
slowly is only stopped by `max_bytes`.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx

REMOTE_TYPES = ("direct", "dropbox", "drive", "mega")
MAX_REDIRECTS = 5
DEFAULT_MEGA_API_URL = "https://g.api.mega.co.nz/cs"
FALLBACK_FILENAME = "audio"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK_BYTES = 64 * 1024
_MAX_FILENAME_CHARS = 200
_MAX_API_ANSWER_BYTES = 1024 * 1024
_USER_AGENT = "openmvsep-remote-fetch/1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RemoteFetchError(Exception):
    """A download that cannot be done; str(e) is a short message fit to show the API user."""


@dataclass(frozen=True)
class FetchedFile:
    path: Path  # where the bytes were written (inside dest_dir)
    filename: str  # the sanitized original name, for naming outputs
    size: int


# --------------------------------------------------------------------------- share links


def direct_url(url: str, remote_type: str) -> str:
    """The URL to download for a user's link: Dropbox and Drive share links become direct downloads."""
    if remote_type not in REMOTE_TYPES:
        raise RemoteFetchError(f"unknown remote_type {remote_type!r}; use one of: {', '.join(REMOTE_TYPES)}")
    parts = _split_http_url(url)
    if remote_type == "dropbox":
        return _dropbox_direct_url(parts)
    if remote_type == "drive":
        return _drive_direct_url(parts)
    if remote_type == "mega":
        _parse_mega_link(url)  # validates; MEGA links are resolved through its API in fetch()
    return url.strip()


def _split_http_url(url: str) -> SplitResult:
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
    if not (_host_matches(hostname, "drive.google.com") or _host_matches(hostname, "docs.google.com")
            or _host_matches(hostname, "drive.usercontent.google.com")):
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


# --------------------------------------------------------------------------- address policy


def is_public_address(address: IPAddress) -> bool:
    """True for addresses that are fine to fetch from on behalf of a user (globally routable)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 reaches 10.0.0.1
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global  # also catches shared space such as 100.64.0.0/10
    )


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All addresses the system resolver gives for host, in its preferred order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise RemoteFetchError(f"could not resolve the host {host}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class NetworkPolicy:
    """Which addresses may be contacted, how names resolve, and how TLS is verified.

    fetch() builds the production policy; tests use other resolvers/checks/CA files.
    """

    address_allowed: Callable[[IPAddress], bool] = is_public_address
    resolve: Callable[[str, int], list[IPAddress]] = resolve_host
    verify: ssl.SSLContext | bool = True


# --------------------------------------------------------------------------- pinned HTTP


class _PinnedHttp:
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

    def __enter__(self) -> _PinnedHttp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def checked_addresses(self, url: httpx.URL) -> list[IPAddress]:
        """The addresses url's host resolves to; RemoteFetchError unless all are allowed."""
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
            raise RemoteFetchError(f"refusing to download from {url.host}: it is a private or reserved address")
        return addresses

    def send(self, method: str, url: httpx.URL, *, content: bytes | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
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
                method, url.copy_with(host=str(address)), content=content,
                headers=request_headers, extensions=extensions,
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


def _to_httpx_url(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise RemoteFetchError("the link is not a valid URL") from None


@contextmanager
def _network_errors() -> Iterator[None]:
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


# --------------------------------------------------------------------------- files


def safe_filename(name: str | None) -> str:
    """A name without directories, '..', or control characters; FALLBACK_FILENAME when nothing is left."""
    if not name:
        return FALLBACK_FILENAME
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if not unicodedata.category(char).startswith("C"))
    name = re.sub(r"\.{2,}", ".", name).strip(" .")  # no '..', no hidden or dot-only names
    if len(name) > _MAX_FILENAME_CHARS:
        stem, extension = os.path.splitext(name)
        extension = extension if len(extension) <= 16 else ""
        name = stem[: _MAX_FILENAME_CHARS - len(extension)] + extension
    return name or FALLBACK_FILENAME


_DISPOSITION_PARAM = re.compile(r';\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _content_disposition_filename(value: str) -> str | None:
    """The filename of a Content-Disposition header; RFC 6266 prefers filename* over filename."""
    params: dict[str, str] = {}
    for match in _DISPOSITION_PARAM.finditer(value):
        raw = match.group(2).strip()
        if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(match.group(1).lower(), raw)
    extended = params.get("filename*")
    if extended and extended.count("'") >= 2:
        charset, _language, encoded = extended.split("'", 2)
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass
    return params.get("filename")


def _response_filename(response: httpx.Response, url: httpx.URL, *, use_url_path: bool) -> str:
    disposition = response.headers.get("content-disposition")
    name = _content_disposition_filename(disposition) if disposition else None
    if not name and use_url_path:
        name = url.path.rsplit("/", 1)[-1]  # httpx has already percent-decoded the path
    return safe_filename(name)


def _describe_bytes(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MB" if count >= 1024 * 1024 else f"{count} bytes"


def _too_large(max_bytes: int) -> RemoteFetchError:
    return RemoteFetchError(f"the remote file is larger than the {_describe_bytes(max_bytes)} limit")


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
        raise _too_large(max_bytes)


def _write_chunks(chunks: Iterable[bytes], dest_dir: Path, filename: str, max_bytes: int, *,
                  transform: Callable[[bytes], bytes] | None = None,
                  expected_size: int | None = None) -> FetchedFile:
    """Stream chunks into a new file in dest_dir; on any failure the partial file is removed."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    extension = os.path.splitext(filename)[1]
    suffix = extension.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", extension) else ""
    descriptor, temp_name = tempfile.mkstemp(dir=dest_dir, prefix="remote-", suffix=suffix)
    path = Path(temp_name)
    size = 0
    try:
        with os.fdopen(descriptor, "wb") as output:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes)
                output.write(transform(chunk) if transform else chunk)
        if size == 0:
            raise RemoteFetchError("the remote file is empty")
        if expected_size is not None and size != expected_size:
            raise RemoteFetchError("the download was incomplete")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FetchedFile(path=path, filename=filename, size=size)


# --------------------------------------------------------------------------- fetch


def fetch(url: str, remote_type: str, dest_dir: Path, *, max_bytes: int, timeout: float,
          allow_private: bool = False, mega_api_url: str = DEFAULT_MEGA_API_URL) -> FetchedFile:
    """Download the file behind a user's link into dest_dir (RemoteFetchError on any failure)."""
    policy = NetworkPolicy(address_allowed=(lambda _address: True) if allow_private else is_public_address)
    return fetch_with_policy(url, remote_type, Path(dest_dir), max_bytes=max_bytes, timeout=timeout,
                             policy=policy, mega_api_url=mega_api_url)


def fetch_with_policy(url: str, remote_type: str, dest_dir: Path, *, max_bytes: int, timeout: float,
                      policy: NetworkPolicy, mega_api_url: str = DEFAULT_MEGA_API_URL) -> FetchedFile:
    """fetch() with an explicit NetworkPolicy (address check, resolver, TLS verification)."""
    target = direct_url(url, remote_type)
    with _PinnedHttp(policy, timeout) as http, _network_errors():
        if remote_type == "mega":
            return _fetch_mega(http, target, dest_dir, max_bytes, mega_api_url)
        response, final_url = http.get_following_redirects(_to_httpx_url(target))
        with closing(response):
            _check_download_response(response, max_bytes)
            filename = _response_filename(response, final_url, use_url_path=remote_type != "drive")
            return _write_chunks(response.iter_bytes(_CHUNK_BYTES), dest_dir, filename, max_bytes)


# --------------------------------------------------------------------------- MEGA


@dataclass(frozen=True)
class MegaLink:
    handle: str
    key: bytes  # the 32-byte file key from the link


@dataclass(frozen=True)
class MegaDownload:
    size: int
    url: str
    attributes: str  # URL-safe base64 of the AES-CBC encrypted attributes


_MEGA_ERRORS = {
    -1: "internal error",
    -2: "bad arguments",
    -3: "the service is busy, try again later",
    -4: "rate limit reached, try again later",
    -9: "file not found",
    -11: "access denied",
    -16: "the file is blocked",
    -17: "transfer quota exceeded",
    -18: "temporarily unavailable, try again later",
}
_MEGA_HANDLE = re.compile(r"[A-Za-z0-9_-]{8}")
_MEGA_KEY = re.compile(r"[A-Za-z0-9_-]{43,44}={0,2}")


def _parse_mega_link(url: str) -> MegaLink:
    """https://mega.nz/file/<handle>#<key> or the old https://mega.nz/#!<handle>!<key>."""
    parts = _split_http_url(url)
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
    return MegaLink(handle=handle, key=_b64url_decode(key))


def _b64url_decode(text: str) -> bytes:
    text = text.rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mega_cipher_parameters(file_key: bytes) -> tuple[bytes, bytes]:
    """(AES-128 key, CTR initial counter block) from a 32-byte MEGA file key."""
    aes_key = bytes(a ^ b for a, b in zip(file_key[:16], file_key[16:32]))
    counter_block = file_key[16:24] + bytes(8)  # the nonce, then a 64-bit block counter from 0
    return aes_key, counter_block


def _aes_primitives():
    """cryptography's Cipher, algorithms, modes; imported late because only MEGA needs them."""
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        raise RemoteFetchError("mega links need the 'cryptography' package") from None
    return Cipher, algorithms, modes


def _mega_download_info(http: _PinnedHttp, api_url: str, handle: str) -> MegaDownload:
    """Ask the MEGA API where the encrypted file lies (the "g" command)."""
    endpoint = _to_httpx_url(api_url).copy_merge_params({"id": str(secrets.randbelow(2**31))})
    body = json.dumps([{"a": "g", "g": 1, "p": handle}]).encode()
    response = http.send("POST", endpoint, content=body, headers={"Content-Type": "application/json"})
    with closing(response):
        if response.status_code != 200:
            raise RemoteFetchError(f"the MEGA API answered HTTP {response.status_code}")
        raw = b""
        for chunk in response.iter_bytes(_CHUNK_BYTES):
            raw += chunk
            if len(raw) > _MAX_API_ANSWER_BYTES:
                raise RemoteFetchError("the MEGA API answer is too large")
    try:
        answer = json.loads(raw)
    except ValueError:
        raise RemoteFetchError("the MEGA API gave an unreadable answer") from None
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]  # one answer per command sent
    if isinstance(answer, dict) and isinstance(answer.get("e"), int):
        answer = answer["e"]
    if isinstance(answer, int) and not isinstance(answer, bool):
        meaning = _MEGA_ERRORS.get(answer, "unknown error")
        raise RemoteFetchError(f"MEGA refused the link (error {answer}: {meaning})")
    if not (isinstance(answer, dict) and isinstance(answer.get("s"), int) and isinstance(answer.get("g"), str)
            and isinstance(answer.get("at"), str)):
        raise RemoteFetchError("the MEGA API gave an unreadable answer")
    return MegaDownload(size=answer["s"], url=answer["g"], attributes=answer["at"])


def _mega_filename(aes_key: bytes, encrypted_attributes: str) -> str:
    """Decrypt `MEGA{"n": ...}` (AES-CBC, zero IV, zero padding) and return the sanitized name."""
    Cipher, algorithms, modes = _aes_primitives()
    try:
        ciphertext = _b64url_decode(encrypted_attributes)
    except ValueError:
        raise RemoteFetchError("the MEGA API gave unreadable file attributes") from None
    if not ciphertext or len(ciphertext) % 16:
        raise RemoteFetchError("the MEGA API gave unreadable file attributes")
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(bytes(16))).decryptor()
    plaintext = (decryptor.update(ciphertext) + decryptor.finalize()).rstrip(b"\0")
    if not plaintext.startswith(b"MEGA{"):
        raise RemoteFetchError("the key in the MEGA link is wrong")  # garbage: a wrong key decrypts to noise
    try:
        attributes = json.loads(plaintext[4:].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RemoteFetchError("the MEGA API gave unreadable file attributes") from None
    name = attributes.get("n") if isinstance(attributes, dict) else None
    return safe_filename(name if isinstance(name, str) else None)


def _fetch_mega(http: _PinnedHttp, link_url: str, dest_dir: Path, max_bytes: int, api_url: str) -> FetchedFile:
    link = _parse_mega_link(link_url)
    Cipher, algorithms, modes = _aes_primitives()  # fail before any network work when it is missing
    aes_key, counter_block = _mega_cipher_parameters(link.key)
    info = _mega_download_info(http, api_url, link.handle)
    if info.size > max_bytes:
        raise _too_large(max_bytes)
    filename = _mega_filename(aes_key, info.attributes)
    response, _final_url = http.get_following_redirects(_to_httpx_url(info.url))
    with closing(response):
        status = response.status_code
        if not 200 <= status < 300:
            raise RemoteFetchError(f"the MEGA file server answered HTTP {status}")
        decryptor = Cipher(algorithms.AES(aes_key), modes.CTR(counter_block)).decryptor()
        return _write_chunks(response.iter_bytes(_CHUNK_BYTES), dest_dir, filename, max_bytes,
                             transform=decryptor.update, expected_size=info.size)


# --------------------------------------------------------------------------- outgoing notifications


def post_json(url: str, payload: object, *, timeout: float, allow_private: bool = False) -> int:
    """POST JSON to a user-given URL (webhooks) under the same address policy as downloads; returns the status."""
    import json

    policy = NetworkPolicy(address_allowed=(lambda _address: True) if allow_private else is_public_address)
    target = _to_httpx_url(_split_http_url(url).geturl())
    body = json.dumps(payload).encode()
    with _PinnedHttp(policy, timeout) as http, _network_errors():
        response = http.send("POST", target, content=body, headers={"Content-Type": "application/json"})
        response.close()
        return response.status_code
