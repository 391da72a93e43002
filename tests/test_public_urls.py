"""Links behind proxies: with no OPENMVSEP_PUBLIC_URL every link names the address the client used (its Host, and
what a trusted proxy says in X-Forwarded-Proto/Host/Prefix), never the address the server is bound to; the
X-Forwarded-* headers of anyone else change nothing."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from openmvsep.settings import Settings
from openmvsep.store.models import User
from test_webhook_outbox import Receiver

from conftest import Harness, make_settings, stereo_mix, wav_bytes
from processes import Server

PROXY = "10.1.2.3"  # inside the trusted 10.0.0.0/8 of these tests
STRANGER = "203.0.113.7"  # a client connecting directly
FORWARDED = {
    "host": "sep.internal:8000",  # what the proxy connects to
    "x-forwarded-proto": "https",
    "x-forwarded-host": "sep.example.org",
    "x-forwarded-prefix": "/mvsep",
}
PUBLIC = "https://sep.example.org/mvsep"  # what the client used, as the proxy says
DIRECT = "http://sep.internal:8000"  # what the headers of an untrusted peer leave


def client_from(h: Harness, address: str) -> TestClient:
    """Another client of the harness's app (already started), connecting from `address`."""
    return TestClient(h.app, client=(address, 40000))


def create(client: TestClient, token: str, headers: dict[str, str], **fields: str) -> dict:
    data = {"api_token": token, "sep_type": "55", "add_opt1": "dsp", "output_format": "1", **fields}
    files = {"audiofile": ("song.wav", wav_bytes(stereo_mix(1.0)), "audio/wav")}
    body = client.post("/api/separation/create", data=data, files=files, headers=headers).json()
    assert body["success"] is True, body
    return body["data"]


def links_of(done: dict) -> list[str]:
    return [done["data"]["input_file"]["url"], *(f["url"] for f in done["data"]["files"])]


@pytest.fixture
def proxied(make_harness):
    return make_harness(public_url="", trusted_proxies="10.0.0.0/8")


def test_forwarded_headers_of_a_trusted_proxy_make_the_links(proxied):
    token = proxied.user(premium=True, credits=100)
    proxy, stranger = client_from(proxied, PROXY), client_from(proxied, STRANGER)
    via_proxy = create(proxy, token, FORWARDED)
    assert via_proxy["link"] == f"{PUBLIC}/api/separation/get?hash={via_proxy['hash']}"
    direct = create(stranger, token, FORWARDED)  # the same headers from an address nobody trusts
    assert direct["link"] == f"{DIRECT}/api/separation/get?hash={direct['hash']}"
    proxied.run_all()

    done = proxy.get("/api/separation/get", params={"hash": via_proxy["hash"]}, headers=FORWARDED).json()
    assert done["status"] == "done" and len(done["data"]["files"]) == 2
    assert all(url.startswith(f"{PUBLIC}/storage/") for url in links_of(done)), links_of(done)
    assert "[sep.example.org]" in done["data"]["input_file"]["download"]  # named after the site, as MVSep's
    # A proxy that keeps the prefix in the path it forwards reaches the same route.
    kept = proxy.get(f"/mvsep/api/separation/get?hash={via_proxy['hash']}", headers=FORWARDED).json()
    assert kept == done
    # Behind the proxy each link leads to the file: the prefix is the proxy's, the rest is this server's path.
    first = done["data"]["files"][0]
    content = proxy.get(first["url"].removeprefix(PUBLIC), headers=FORWARDED).content
    assert len(content) == first["bytes"]

    ignored = stranger.get("/api/separation/get", params={"hash": direct["hash"]}, headers=FORWARDED).json()
    assert all(url.startswith(f"{DIRECT}/storage/") for url in links_of(ignored)), links_of(ignored)


def test_odd_forwarded_values_are_ignored(proxied):
    token = proxied.user(premium=True, credits=100)
    proxy = client_from(proxied, PROXY)
    odd = {**FORWARDED, "x-forwarded-host": "evil.example/x@y", "x-forwarded-prefix": "no-slash"}
    created = create(proxy, token, odd)
    assert created["link"].startswith("https://sep.internal:8000/api/separation/get?hash=")
    # A list (one value per proxy): the last one is the nearest proxy's, the one trusted.
    chained = {**FORWARDED, "x-forwarded-host": "forged.example, sep.example.org"}
    assert create(proxy, token, chained)["link"].startswith(f"{PUBLIC}/api/")


def test_client_address_comes_from_a_trusted_proxy_only(proxied):
    secret = "quiet-violet-harbour-42"
    form = {"email": "", "password": secret, "password_confirmation": secret, "name": "n"}
    for address, email, expected in ((PROXY, "p@example.com", "198.51.100.4"), (STRANGER, "s@example.com", STRANGER)):
        client = client_from(proxied, address)
        r = client.post("/api/app/register", data={**form, "email": email}, headers={"x-forwarded-for": "198.51.100.4"})
        assert r.json()["success"] is True, r.text
        with proxied.ctx.db.reader() as s:
            assert s.scalar(select(User.registered_from).where(User.email == email)) == expected


def wait_for(condition: Callable[[], object], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_webhook_bodies_link_to_where_the_job_was_created(make_harness):
    h = make_harness(
        public_url="",
        trusted_proxies="10.0.0.0/8",
        remote_allow_private=True,  # the receiver lives on 127.0.0.1
        webhook_poll_seconds=0.05,
    )
    receiver = Receiver()
    try:
        token = h.user(premium=True, credits=100)
        proxy = client_from(h, PROXY)
        created = create(proxy, token, FORWARDED, webhook_url=receiver.url)
        h.run_all()
        wait_for(lambda: receiver.posts)
        (body,) = receiver.posts
        assert body["hash"] == created["hash"] and body["status"] == "done"
        # No request when it is sent: the links name the address the job was created through.
        assert all(url.startswith(f"{PUBLIC}/storage/") for url in links_of(body)), links_of(body)
        polled = proxy.get("/api/separation/get", params={"hash": created["hash"]}, headers=FORWARDED).json()
        assert {k: v for k, v in body.items() if k != "hash"} == polled
    finally:
        receiver.close()


def test_the_web_page_shows_the_address_the_browser_used(tmp_path):
    h = Harness(make_settings(tmp_path, public_url="", trusted_proxies="10.0.0.0/8"), pages=True)
    try:
        page = client_from(h, PROXY).get("/api", headers=FORWARDED).text
        assert f"{PUBLIC}/api/separation/create" in page and "sep.internal" not in page
        page = client_from(h, STRANGER).get("/api", headers={**FORWARDED, "host": "music.example:8443"}).text
        assert "http://music.example:8443/api/separation/create" in page and "sep.example.org" not in page
    finally:
        h.close()


def test_trusted_proxies_setting():
    assert Settings(trusted_proxies=" 10.0.0.0/8, ::1 ,192.0.2.1").trusted_proxies == "10.0.0.0/8,::1,192.0.2.1"
    with pytest.raises(ValidationError, match="not an IP address"):
        Settings(trusted_proxies="nginx")
    # Bound to every address with no public URL: what links made without a request use is never loopback.
    assert "127.0.0.1" not in Settings(host="0.0.0.0", public_url="").effective_public_url


def test_trusted_proxies_defaults_to_uvicorns_variable(monkeypatch):
    monkeypatch.delenv("OPENMVSEP_TRUSTED_PROXIES", raising=False)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert Settings().trusted_proxies == "127.0.0.1,::1"
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.5")  # what earlier releases told operators to set
    assert Settings().trusted_proxies == "10.0.0.5"
    monkeypatch.setenv("OPENMVSEP_TRUSTED_PROXIES", "*")
    assert Settings().trusted_proxies == "*"


# ------------------------------------------------------------------------------------------------ the real server


def curl_text(url: str, *args: str) -> str:
    return subprocess.run(
        ["curl", "-sS", "--fail-with-body", *args, url], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def test_a_server_bound_to_every_address_links_to_the_host_it_was_asked_for(tmp_path):
    server = Server(tmp_path / "data", workers=1, OPENMVSEP_HOST="0.0.0.0", OPENMVSEP_PUBLIC_URL="")
    try:
        token = server.cli("user", "create", "--email", "u@example.com", "--password", "password123").split()[-1]
        song = tmp_path / "song.wav"
        song.write_bytes(wav_bytes(stereo_mix(1.0)))
        host = ["-H", "Host: music.example:8443"]
        created = server.curl(
            "/api/separation/create",
            *host,
            *("-F", f"api_token={token}", "-F", "sep_type=55", "-F", "add_opt1=dsp", "-F", f"audiofile=@{song}"),
        )
        hash_value = created["data"]["hash"]
        assert created["data"]["link"] == f"http://music.example:8443/api/separation/get?hash={hash_value}"
        server.wait_status(hash_value, {"done"})
        done = server.curl(f"/api/separation/get?hash={hash_value}", *host)
        assert all(url.startswith("http://music.example:8443/storage/") for url in links_of(done)), done
        assert "127.0.0.1" not in str(done)
        page = curl_text(f"{server.url}/api", *host)
        assert "http://music.example:8443/api/separation/create" in page and "127.0.0.1" not in page

        # This machine is a trusted proxy by default (a proxy beside the server): its headers make the links.
        proxy = [*host, *(f"-H{k}: {v}" for k, v in FORWARDED.items() if k != "host")]
        behind = server.curl(f"/api/separation/get?hash={hash_value}", *proxy)
        assert all(url.startswith(f"{PUBLIC}/storage/") for url in links_of(behind)), behind
        assert server.curl(f"/mvsep/api/separation/get?hash={hash_value}", *proxy) == behind
    finally:
        server.stop()
