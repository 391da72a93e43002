"""openmvsep.net against real HTTP(S) servers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import random
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from openmvsep.net import (
    AddressRefused,
    FetchedFile,
    NetworkPolicy,
    RemoteFetchError,
    direct_url,
    fetch,
    fetch_with_policy,
    is_public_address,
    safe_filename,
)
from openmvsep.net.mega import _download_info
from openmvsep.net.pinned import PinnedHttp

Route = Callable[[BaseHTTPRequestHandler], None]
LOOPBACK = IPv4Address("127.0.0.1")


class LocalServer:
    """A threaded HTTP server whose paths are answered by plain functions; it records every request."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[dict] = []
        self.release = threading.Event()  # slow routes wait on it; set at shutdown
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def dispatch(self) -> None:
                path = unquote(urlsplit(self.path).path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append(
                    {
                        "method": self.command,
                        "path": path,
                        "query": urlsplit(self.path).query,
                        "host": self.headers.get("Host"),
                        "body": body,
                    }
                )
                route = server.routes.get(path)
                try:
                    if route is None:
                        send(self, 404, b"not here", "text/plain")
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    self.close_connection = True  # the client gave up, as intended by some tests

            do_GET = do_POST = dispatch

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.host = host
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def paths_requested(self) -> list[str]:
        return [request["path"] for request in self.requests]

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str = "application/octet-stream",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def redirect(target: str, status: int = 302) -> Route:
    return lambda handler: send(handler, status, b"", "text/plain", {"Location": target})


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    yield local
    local.close()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "incoming"


def fetch_local(
    url: str, dest: Path, *, remote_type: str = "direct", max_bytes: int = 10_000_000, timeout: float = 5.0, **kwargs
) -> FetchedFile:
    return fetch(url, remote_type, dest, max_bytes=max_bytes, timeout=timeout, allow_private=True, **kwargs)


def leftover_files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


# --------------------------------------------------------------------------- direct downloads


def test_filename_comes_from_content_disposition(server: LocalServer, dest: Path) -> None:
    body = payload(150_000)
    server.routes["/get"] = lambda h: send(
        h, 200, body, "audio/mpeg", {"Content-Disposition": 'attachment; filename="My Song.mp3"'}
    )
    fetched = fetch_local(server.url("/get?token=abc"), dest)
    assert fetched.filename == "My Song.mp3"
    assert fetched.size == len(body)
    assert fetched.path.parent == dest
    assert fetched.path.suffix == ".mp3"
    assert fetched.path.read_bytes() == body


def test_extended_content_disposition_filename_wins(server: LocalServer, dest: Path) -> None:
    server.routes["/get"] = lambda h: send(
        h,
        200,
        b"RIFF-data",
        "audio/wav",
        {
            "Content-Disposition": 'attachment; filename="fallback.wav"; '
            "filename*=UTF-8''Bj%C3%B6rk%20%E2%80%93%20J%C3%B3ga.wav"
        },
    )
    assert fetch_local(server.url("/get"), dest).filename == "Björk – Jóga.wav"


def test_filename_comes_from_url_path(server: LocalServer, dest: Path) -> None:
    server.routes["/music/Some Track.flac"] = lambda h: send(h, 200, b"fLaC....", "audio/flac")
    fetched = fetch_local(server.url("/music/Some%20Track.flac?x=1"), dest)
    assert fetched.filename == "Some Track.flac"
    assert fetched.path.read_bytes() == b"fLaC...."


def test_hostile_content_disposition_name_is_sanitized(server: LocalServer, dest: Path) -> None:
    server.routes["/get"] = lambda h: send(
        h, 200, b"data", "audio/mpeg", {"Content-Disposition": 'attachment; filename="../../etc/passwd"'}
    )
    fetched = fetch_local(server.url("/get"), dest)
    assert fetched.filename == "passwd"
    assert fetched.path.parent == dest


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("song.mp3", "song.mp3"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\track.wav", "track.wav"),
        ("bad\x00na\nme\x7f.wav", "badname.wav"),
        ("my..song...flac", "my.song.flac"),
        ("..", "audio"),
        (".hidden.mp3", "hidden.mp3"),
        ("", "audio"),
        (None, "audio"),
        ("dir/", "audio"),
    ],
)
def test_safe_filename(raw: str | None, expected: str) -> None:
    assert safe_filename(raw) == expected


def test_safe_filename_keeps_extension_when_truncating() -> None:
    name = safe_filename("x" * 500 + ".flac")
    assert len(name) == 200 and name.endswith(".flac")


def test_redirect_chain_is_followed(server: LocalServer, dest: Path) -> None:
    body = payload(5000)
    server.routes["/r1"] = redirect(server.url("/r2"), 301)
    server.routes["/r2"] = redirect("/r3", 302)  # relative Location
    server.routes["/r3"] = redirect("r4", 303)  # relative to the current directory
    server.routes["/r4"] = redirect(server.url("/r5"), 307)
    server.routes["/r5"] = redirect(server.url("/files/final.ogg"), 308)  # the fifth redirect: still allowed
    server.routes["/files/final.ogg"] = lambda h: send(h, 200, body, "audio/ogg")
    fetched = fetch_local(server.url("/r1"), dest)
    assert fetched.path.read_bytes() == body
    assert fetched.filename == "final.ogg"  # named after the URL that answered
    assert server.paths_requested() == ["/r1", "/r2", "/r3", "/r4", "/r5", "/files/final.ogg"]


def test_too_many_redirects_are_refused(server: LocalServer, dest: Path) -> None:
    for hop in range(1, 7):
        server.routes[f"/r{hop}"] = redirect(f"/r{hop + 1}")
    server.routes["/r7"] = lambda h: send(h, 200, b"never reached", "audio/mpeg")
    with pytest.raises(RemoteFetchError, match="too many redirects"):
        fetch_local(server.url("/r1"), dest)
    assert "/r7" not in server.paths_requested()
    assert leftover_files(dest) == []


def test_redirect_to_another_scheme_is_refused(server: LocalServer, dest: Path) -> None:
    server.routes["/go"] = redirect("file:///etc/passwd")
    with pytest.raises(RemoteFetchError, match="only http and https"):
        fetch_local(server.url("/go"), dest)


def test_http_error_status_is_reported(server: LocalServer, dest: Path) -> None:
    with pytest.raises(RemoteFetchError, match="HTTP 404"):
        fetch_local(server.url("/missing.mp3"), dest)
    assert leftover_files(dest) == []


def test_oversized_content_length_is_refused_up_front(server: LocalServer, dest: Path) -> None:
    def announces_a_huge_body(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "audio/wav")
        handler.send_header("Content-Length", str(10**12))
        handler.end_headers()
        handler.wfile.write(payload(1000))
        handler.wfile.flush()
        server.release.wait(10)  # reading the body would stall: only the header can cause the refusal

    server.routes["/big"] = announces_a_huge_body
    with pytest.raises(RemoteFetchError, match="larger than"):
        fetch_local(server.url("/big"), dest, max_bytes=10_000, timeout=2.0)
    assert leftover_files(dest) == []


def chunked_stream(chunk: bytes, count: int) -> Route:
    """Chunked transfer encoding, so the size is unknown until the bytes arrive."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "audio/mpeg")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for _ in range(count):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")

    return route


def test_oversized_stream_is_aborted_and_removed(server: LocalServer, dest: Path) -> None:
    server.routes["/endless"] = chunked_stream(payload(4096), 500)  # 2 MB against a 50 kB limit
    with pytest.raises(RemoteFetchError, match="larger than"):
        fetch_local(server.url("/endless"), dest, max_bytes=50_000)
    assert leftover_files(dest) == []


def test_chunked_stream_within_limit_is_kept(server: LocalServer, dest: Path) -> None:
    chunk = payload(4096)
    server.routes["/stream"] = chunked_stream(chunk, 10)
    fetched = fetch_local(server.url("/stream"), dest, max_bytes=50_000)
    assert fetched.path.read_bytes() == chunk * 10


def test_slow_server_times_out(server: LocalServer, dest: Path) -> None:
    def stalls(handler: BaseHTTPRequestHandler) -> None:
        server.release.wait(10)
        send(handler, 200, b"too late", "audio/mpeg")

    server.routes["/slow"] = stalls
    started = time.monotonic()
    with pytest.raises(RemoteFetchError, match="timed out"):
        fetch_local(server.url("/slow"), dest, timeout=0.3)
    assert time.monotonic() - started < 3
    assert leftover_files(dest) == []


def test_stall_in_the_middle_of_the_body_times_out(server: LocalServer, dest: Path) -> None:
    def stalls_midway(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "audio/mpeg")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(payload(1000))
        handler.wfile.flush()
        server.release.wait(10)

    server.routes["/stall"] = stalls_midway
    with pytest.raises(RemoteFetchError, match="timed out"):
        fetch_local(server.url("/stall"), dest, timeout=0.3)
    assert leftover_files(dest) == []


def test_html_page_is_refused(server: LocalServer, dest: Path) -> None:
    page = b"<html><body>Google Drive can't scan this file for viruses.</body></html>"
    server.routes["/view"] = lambda h: send(h, 200, page, "text/html; charset=utf-8")
    with pytest.raises(RemoteFetchError, match="direct download link"):
        fetch_local(server.url("/view"), dest)
    assert leftover_files(dest) == []


def test_empty_body_is_refused(server: LocalServer, dest: Path) -> None:
    server.routes["/empty"] = lambda h: send(h, 200, b"", "audio/mpeg")
    with pytest.raises(RemoteFetchError, match="empty"):
        fetch_local(server.url("/empty"), dest)
    assert leftover_files(dest) == []


def test_connection_refused_is_reported(dest: Path) -> None:
    spare = LocalServer()
    closed_url = spare.url("/song.mp3")
    spare.close()  # nothing listens on that port any more
    with pytest.raises(RemoteFetchError, match="could not connect"):
        fetch_local(closed_url, dest)


# --------------------------------------------------------------------------- SSRF guard


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "fc00::1",
        "fe80::1",
        "ff02::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_private_and_special_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_global_addresses_are_public(address: str) -> None:
    assert is_public_address(ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:9/song.mp3",
        "http://10.0.0.1/song.mp3",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:9/song.mp3",
        "http://localhost:9/song.mp3",
    ],
)
def test_private_targets_are_refused_by_default(url: str, dest: Path) -> None:
    with pytest.raises(RemoteFetchError, match="private or reserved"):
        fetch(url, "direct", dest, max_bytes=1000, timeout=1.0)


def test_a_refused_address_is_told_apart_by_its_class(dest: Path) -> None:
    with pytest.raises(AddressRefused) as caught:
        fetch("http://10.0.0.1/song.mp3", "direct", dest, max_bytes=1000, timeout=1.0)
    assert isinstance(caught.value, RemoteFetchError)  # callers that catch every fetch error still do
    with pytest.raises(RemoteFetchError) as caught:
        fetch("ftp://example.test/song.mp3", "direct", dest, max_bytes=1000, timeout=1.0)
    assert not isinstance(caught.value, AddressRefused)


def test_loopback_server_is_never_contacted_by_default(server: LocalServer, dest: Path) -> None:
    server.routes["/song.mp3"] = lambda h: send(h, 200, b"secret", "audio/mpeg")
    with pytest.raises(RemoteFetchError, match="private or reserved"):
        fetch(server.url("/song.mp3"), "direct", dest, max_bytes=1000, timeout=1.0)
    assert server.requests == []
    assert fetch_local(server.url("/song.mp3"), dest).path.read_bytes() == b"secret"  # allow_private=True


def only_first_loopback_is_allowed(address) -> bool:
    """Treat 127.0.0.1 as if it were a public server; everything else gets the real check."""
    return address == LOOPBACK or is_public_address(address)


@pytest.mark.parametrize("target", ["http://10.0.0.1/x.mp3", "http://169.254.169.254/latest/", "http://[::1]:9/x"])
def test_every_redirect_hop_is_checked(server: LocalServer, dest: Path, target: str) -> None:
    server.routes["/innocent.mp3"] = redirect(target)
    policy = NetworkPolicy(address_allowed=only_first_loopback_is_allowed)
    with pytest.raises(RemoteFetchError, match="private or reserved"):
        fetch_with_policy(server.url("/innocent.mp3"), "direct", dest, max_bytes=1000, timeout=1.0, policy=policy)
    assert server.paths_requested() == ["/innocent.mp3"]


def test_redirect_to_another_loopback_server_never_reaches_it(server: LocalServer, dest: Path) -> None:
    internal = LocalServer(host="127.0.0.2")
    try:
        internal.routes["/admin"] = lambda h: send(h, 200, b"internal secrets", "audio/mpeg")
        server.routes["/innocent.mp3"] = redirect(internal.url("/admin"))
        policy = NetworkPolicy(address_allowed=only_first_loopback_is_allowed)
        with pytest.raises(RemoteFetchError, match="private or reserved"):
            fetch_with_policy(server.url("/innocent.mp3"), "direct", dest, max_bytes=1000, timeout=1.0, policy=policy)
        assert internal.requests == []
    finally:
        internal.close()


def test_any_private_address_among_several_refuses(dest: Path) -> None:
    policy = NetworkPolicy(resolve=lambda host, port: [ip_address("93.184.215.14"), LOOPBACK])
    with pytest.raises(RemoteFetchError, match="private or reserved"):
        fetch_with_policy("http://mixed.example.test/a.mp3", "direct", dest, max_bytes=1000, timeout=1.0, policy=policy)


def test_connection_goes_to_the_checked_address_with_the_original_host(server: LocalServer, dest: Path) -> None:
    # No DNS exists here: the download only works because the connection uses the resolver's answer.
    server.routes["/song.mp3"] = lambda h: send(h, 200, b"pinned", "audio/mpeg")
    resolved: list[str] = []

    def resolve(host: str, port: int):
        resolved.append(host)
        return [LOOPBACK]

    policy = NetworkPolicy(address_allowed=lambda address: True, resolve=resolve)
    url = f"http://audio.example.test:{server.port}/song.mp3"
    fetched = fetch_with_policy(url, "direct", dest, max_bytes=1000, timeout=2.0, policy=policy)
    assert fetched.path.read_bytes() == b"pinned"
    assert resolved == ["audio.example.test"]
    assert server.requests[0]["host"] == f"audio.example.test:{server.port}"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[LocalServer, ssl.SSLContext]]:
    """An https server with a self-signed certificate for files.example.test (made with the openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=files.example.test",
            "-addext",
            "subjectAltName=DNS:files.example.test",
        ],
        check=True,
        capture_output=True,
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    local = LocalServer(tls=server_context)
    yield local, ssl.create_default_context(cafile=str(cert))
    local.close()


def test_https_keeps_sni_and_certificate_check_while_pinned(tls_server, dest: Path) -> None:
    server, client_context = tls_server
    server.routes["/song.flac"] = lambda h: send(h, 200, b"secure bytes", "audio/flac")
    policy = NetworkPolicy(
        address_allowed=lambda address: True, resolve=lambda host, port: [LOOPBACK], verify=client_context
    )
    fetched = fetch_with_policy(
        f"https://files.example.test:{server.port}/song.flac",
        "direct",
        dest,
        max_bytes=1000,
        timeout=2.0,
        policy=policy,
    )
    assert fetched.path.read_bytes() == b"secure bytes"
    assert server.requests[0]["host"] == f"files.example.test:{server.port}"

    # Same address, a name the certificate does not cover: verified against the name, so refused.
    with pytest.raises(RemoteFetchError, match="certificate"):
        fetch_with_policy(
            f"https://other.example.test:{server.port}/song.flac",
            "direct",
            dest,
            max_bytes=1000,
            timeout=2.0,
            policy=policy,
        )
    assert len(server.requests) == 1


# --------------------------------------------------------------------------- share-link rewriting


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://www.dropbox.com/s/abc123/song.mp3?dl=0", "https://www.dropbox.com/s/abc123/song.mp3?dl=1"),
        ("https://www.dropbox.com/s/abc123/song.mp3", "https://www.dropbox.com/s/abc123/song.mp3?dl=1"),
        (
            "https://www.dropbox.com/scl/fi/xyz789/song.wav?rlkey=k3y&dl=0",
            "https://www.dropbox.com/scl/fi/xyz789/song.wav?rlkey=k3y&dl=1",
        ),
        ("https://www.dropbox.com/s/abc123/song.mp3?raw=1", "https://www.dropbox.com/s/abc123/song.mp3?raw=1"),
        ("https://dl.dropboxusercontent.com/s/abc123/song.mp3", "https://dl.dropboxusercontent.com/s/abc123/song.mp3"),
    ],
)
def test_dropbox_links_become_direct(link: str, expected: str) -> None:
    assert direct_url(link, "dropbox") == expected


DRIVE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz_-0123"
DRIVE_DIRECT = f"https://drive.usercontent.google.com/download?id={DRIVE_ID}&export=download&confirm=t"


@pytest.mark.parametrize(
    "link",
    [
        f"https://drive.google.com/file/d/{DRIVE_ID}/view?usp=sharing",
        f"https://drive.google.com/file/d/{DRIVE_ID}/view",
        f"https://drive.google.com/file/d/{DRIVE_ID}",
        f"https://drive.google.com/file/u/0/d/{DRIVE_ID}/edit",
        f"https://drive.google.com/open?id={DRIVE_ID}",
        f"https://drive.google.com/uc?id={DRIVE_ID}&export=download",
        f"https://docs.google.com/uc?export=download&id={DRIVE_ID}",
        f"https://drive.usercontent.google.com/download?id={DRIVE_ID}",
    ],
)
def test_drive_links_become_direct(link: str) -> None:
    assert direct_url(link, "drive") == DRIVE_DIRECT


def test_drive_resource_key_is_kept() -> None:
    link = f"https://drive.google.com/file/d/{DRIVE_ID}/view?usp=sharing&resourcekey=0-abcDEF"
    assert direct_url(link, "drive") == DRIVE_DIRECT + "&resourcekey=0-abcDEF"


def test_direct_links_are_unchanged() -> None:
    link = "https://example.com/a%20b/song.mp3?x=1&y=2"
    assert direct_url(link, "direct") == link


@pytest.mark.parametrize(
    ("link", "remote_type", "message"),
    [
        ("https://example.com/song.mp3", "ftp", "unknown remote_type"),
        ("ftp://example.com/song.mp3", "direct", "only http and https"),
        ("file:///etc/passwd", "direct", "only http and https"),
        ("javascript:alert(1)", "direct", "only http and https"),
        ("not a url", "direct", "only http and https"),
        ("http://", "direct", "no host"),
        ("http://[::1/song.mp3", "direct", "not a valid URL"),
        ("http://example.com:99999/song.mp3", "direct", "not a valid URL"),
        ("https://drive.google.com/drive/my-drive", "drive", "no file id"),
        ("https://drive.google.com/open?id=", "drive", "no file id"),
        ("https://example.com/file/d/1AbCdEfGhIjKlMnOp/view", "drive", "not a Google Drive link"),
        ("https://example.com/s/abc/song.mp3", "dropbox", "not a Dropbox link"),
        ("https://mega.nz/folder/AbCdEfGh#0123456789abcdefABCDEF", "mega", "folder links"),
        ("https://mega.nz/file/AbCdEfGh", "mega", "no valid key"),
        ("https://example.com/file/AbCdEfGh#key", "mega", "not a MEGA link"),
    ],
)
def test_bad_links_are_refused(link: str, remote_type: str, message: str) -> None:
    with pytest.raises(RemoteFetchError, match=message):
        direct_url(link, remote_type)


def test_drive_fetch_uses_rewritten_url_and_content_disposition(dest: Path) -> None:
    # Google's certificate cannot be served locally, so the rewritten URL's path and query are replayed over http.
    local = LocalServer()
    try:
        local.routes["/download"] = lambda h: send(
            h,
            200,
            b"drive bytes",
            "application/octet-stream",
            {"Content-Disposition": 'attachment; filename="take 3.wav"'},
        )
        rewritten = direct_url(f"https://drive.google.com/file/d/{DRIVE_ID}/view", "drive")
        local_url = rewritten.replace("https://drive.usercontent.google.com", f"http://127.0.0.1:{local.port}")
        fetched = fetch_local(local_url, dest)
        assert fetched.filename == "take 3.wav"
        assert parse_qs(local.requests[0]["query"]) == {"id": [DRIVE_ID], "export": ["download"], "confirm": ["t"]}
    finally:
        local.close()


# --------------------------------------------------------------------------- MEGA


MEGA_HANDLE = "Xk3pQ9_z"
MEGA_FILE_KEY = bytes(range(1, 33))  # 32 bytes, as in the link
MEGA_KEY_TEXT = base64.urlsafe_b64encode(MEGA_FILE_KEY).decode().rstrip("=")


def mega_encrypt(plain_file: bytes, name: str) -> tuple[bytes, str]:
    """Encrypt a file and its attributes the way MEGA stores them (written from the format description)."""
    ciphers = pytest.importorskip("cryptography.hazmat.primitives.ciphers")
    aes_key = bytes(a ^ b for a, b in zip(MEGA_FILE_KEY[:16], MEGA_FILE_KEY[16:]))
    counter = MEGA_FILE_KEY[16:24] + bytes(8)
    encryptor = ciphers.Cipher(ciphers.algorithms.AES(aes_key), ciphers.modes.CTR(counter)).encryptor()
    encrypted_file = encryptor.update(plain_file) + encryptor.finalize()
    attributes = b"MEGA" + json.dumps({"n": name}).encode()
    attributes += bytes(-len(attributes) % 16)
    cbc = ciphers.Cipher(ciphers.algorithms.AES(aes_key), ciphers.modes.CBC(bytes(16))).encryptor()
    encrypted_attributes = base64.urlsafe_b64encode(cbc.update(attributes) + cbc.finalize()).decode().rstrip("=")
    return encrypted_file, encrypted_attributes


def mega_api(server: LocalServer, answer: object) -> str:
    server.routes["/cs"] = lambda h: send(h, 200, json.dumps(answer).encode(), "application/json")
    return server.url("/cs")


@pytest.mark.parametrize(
    "link",
    [
        f"https://mega.nz/file/{MEGA_HANDLE}#{MEGA_KEY_TEXT}",
        f"https://mega.nz/#!{MEGA_HANDLE}!{MEGA_KEY_TEXT}",
    ],
)
def test_mega_file_is_downloaded_and_decrypted(server: LocalServer, dest: Path, link: str) -> None:
    original = payload(300_007, seed=3)  # not a multiple of 16: the last CTR block is partial
    encrypted, attributes = mega_encrypt(original, "Live at Home – take 2.flac")
    server.routes["/dl/blob"] = lambda h: send(h, 200, encrypted, "application/octet-stream")
    api = mega_api(server, [{"s": len(original), "at": attributes, "g": server.url("/dl/blob"), "msd": 1}])

    fetched = fetch_local(link, dest, remote_type="mega", mega_api_url=api)

    assert fetched.path.read_bytes() == original
    assert fetched.filename == "Live at Home – take 2.flac"
    assert fetched.size == len(original)
    api_call = server.requests[0]
    assert api_call["method"] == "POST"
    assert parse_qs(api_call["query"])["id"][0].isdigit()
    assert json.loads(api_call["body"]) == [{"a": "g", "g": 1, "p": MEGA_HANDLE}]


def test_mega_wrong_key_is_reported(server: LocalServer, dest: Path) -> None:
    original = payload(1000)
    encrypted, attributes = mega_encrypt(original, "a.mp3")
    server.routes["/dl/blob"] = lambda h: send(h, 200, encrypted, "application/octet-stream")
    api = mega_api(server, [{"s": len(original), "at": attributes, "g": server.url("/dl/blob")}])
    wrong_key = base64.urlsafe_b64encode(bytes(32)).decode().rstrip("=")
    with pytest.raises(RemoteFetchError, match="key in the MEGA link is wrong"):
        fetch_local(f"https://mega.nz/file/{MEGA_HANDLE}#{wrong_key}", dest, remote_type="mega", mega_api_url=api)
    assert leftover_files(dest) == []


def test_mega_size_over_limit_is_refused_before_download(server: LocalServer, dest: Path) -> None:
    encrypted, attributes = mega_encrypt(payload(5000), "big.wav")
    server.routes["/dl/blob"] = lambda h: send(h, 200, encrypted, "application/octet-stream")
    api = mega_api(server, [{"s": 5000, "at": attributes, "g": server.url("/dl/blob")}])
    with pytest.raises(RemoteFetchError, match="larger than"):
        fetch_local(
            f"https://mega.nz/file/{MEGA_HANDLE}#{MEGA_KEY_TEXT}",
            dest,
            remote_type="mega",
            mega_api_url=api,
            max_bytes=4000,
        )
    assert "/dl/blob" not in server.paths_requested()
    assert leftover_files(dest) == []


def test_mega_truncated_download_is_removed(server: LocalServer, dest: Path) -> None:
    original = payload(5000)
    encrypted, attributes = mega_encrypt(original, "cut.wav")
    server.routes["/dl/blob"] = lambda h: send(h, 200, encrypted[:3000], "application/octet-stream")
    api = mega_api(server, [{"s": len(original), "at": attributes, "g": server.url("/dl/blob")}])
    with pytest.raises(RemoteFetchError, match="incomplete"):
        fetch_local(f"https://mega.nz/file/{MEGA_HANDLE}#{MEGA_KEY_TEXT}", dest, remote_type="mega", mega_api_url=api)
    assert leftover_files(dest) == []


def test_mega_download_url_gets_the_address_check(server: LocalServer, dest: Path) -> None:
    encrypted, attributes = mega_encrypt(payload(100), "x.mp3")
    api = mega_api(server, [{"s": 100, "at": attributes, "g": "http://10.1.2.3/dl/blob"}])
    policy = NetworkPolicy(address_allowed=only_first_loopback_is_allowed)
    with pytest.raises(RemoteFetchError, match="private or reserved"):
        fetch_with_policy(
            f"https://mega.nz/file/{MEGA_HANDLE}#{MEGA_KEY_TEXT}",
            "mega",
            dest,
            max_bytes=1000,
            timeout=1.0,
            policy=policy,
            mega_api_url=api,
        )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ([-9], r"error -9: file not found"),
        (-2, r"error -2: bad arguments"),
        ([{"e": -11}], r"error -11: access denied"),
        ([-123], r"error -123: unknown error"),
        ([{"s": 10}], "unreadable answer"),
        ("nonsense", "unreadable answer"),
    ],
)
def test_mega_api_errors_are_reported(server: LocalServer, answer: object, message: str) -> None:
    api = mega_api(server, answer)
    with PinnedHttp(NetworkPolicy(address_allowed=lambda address: True), timeout=2.0) as http:
        with pytest.raises(RemoteFetchError, match=message):
            _download_info(http, api, MEGA_HANDLE)


def test_mega_api_error_through_fetch(server: LocalServer, dest: Path) -> None:
    pytest.importorskip("cryptography")
    api = mega_api(server, [-9])
    with pytest.raises(RemoteFetchError, match="file not found"):
        fetch_local(f"https://mega.nz/file/{MEGA_HANDLE}#{MEGA_KEY_TEXT}", dest, remote_type="mega", mega_api_url=api)
    assert leftover_files(dest) == []


def test_mega_without_cryptography_says_so(server: LocalServer, dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "cryptography" or name.startswith("cryptography.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "cryptography", None)  # makes `import cryptography...` fail
    api = mega_api(server, [-9])
    with pytest.raises(RemoteFetchError, match="mega links need the 'cryptography' package"):
        fetch_local(f"https://mega.nz/file/{MEGA_HANDLE}#{MEGA_KEY_TEXT}", dest, remote_type="mega", mega_api_url=api)
    assert server.requests == []  # refused before any network work
