"""MEGA downloads: ask MEGA's API where the file lies, then decrypt it while it streams in.

MEGA stores files encrypted; the key travels in the link's fragment and never reaches MEGA. The
file is AES-128-CTR, its name sits in AES-CBC encrypted attributes, and both keys come from the
link's 32-byte key. Every request (API and file server) goes through the pinned, checked client.
"""

from __future__ import annotations

import json
import secrets
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from openmvsep.net.errors import RemoteFetchError
from openmvsep.net.files import CHUNK_BYTES, FetchedFile, safe_filename, too_large, write_chunks
from openmvsep.net.links import b64url_decode, parse_mega_link
from openmvsep.net.pace import Pace
from openmvsep.net.pinned import PinnedHttp, to_httpx_url

DEFAULT_MEGA_API_URL = "https://g.api.mega.co.nz/cs"

_MAX_API_ANSWER_BYTES = 1024 * 1024
_ERRORS = {
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


@dataclass(frozen=True)
class MegaDownload:
    size: int
    url: str
    attributes: str  # URL-safe base64 of the AES-CBC encrypted attributes


def _cipher_parameters(file_key: bytes) -> tuple[bytes, bytes]:
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


def _download_info(http: PinnedHttp, api_url: str, handle: str) -> MegaDownload:
    """Ask the MEGA API where the encrypted file lies (the "g" command)."""
    endpoint = to_httpx_url(api_url).copy_merge_params({"id": str(secrets.randbelow(2**31))})
    body = json.dumps([{"a": "g", "g": 1, "p": handle}]).encode()
    response = http.send("POST", endpoint, content=body, headers={"Content-Type": "application/json"})
    with closing(response):
        if response.status_code != 200:
            raise RemoteFetchError(f"the MEGA API answered HTTP {response.status_code}")
        raw = b""
        for chunk in response.iter_bytes(CHUNK_BYTES):
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
        meaning = _ERRORS.get(answer, "unknown error")
        raise RemoteFetchError(f"MEGA refused the link (error {answer}: {meaning})")
    if not (
        isinstance(answer, dict)
        and isinstance(answer.get("s"), int)
        and isinstance(answer.get("g"), str)
        and isinstance(answer.get("at"), str)
    ):
        raise RemoteFetchError("the MEGA API gave an unreadable answer")
    return MegaDownload(size=answer["s"], url=answer["g"], attributes=answer["at"])


def _filename(aes_key: bytes, encrypted_attributes: str) -> str:
    """Decrypt `MEGA{"n": ...}` (AES-CBC, zero IV, zero padding) and return the sanitized name."""
    Cipher, algorithms, modes = _aes_primitives()
    try:
        ciphertext = b64url_decode(encrypted_attributes)
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


def fetch_mega(
    http: PinnedHttp, link_url: str, dest_dir: Path, max_bytes: int, api_url: str, pace: Pace | None = None
) -> FetchedFile:
    """Download and decrypt the file of a MEGA file link into dest_dir."""
    link = parse_mega_link(link_url)
    Cipher, algorithms, modes = _aes_primitives()  # fail before any network work when it is missing
    aes_key, counter_block = _cipher_parameters(link.key)
    info = _download_info(http, api_url, link.handle)
    if info.size > max_bytes:
        raise too_large(max_bytes)
    filename = _filename(aes_key, info.attributes)
    response, _final_url = http.get_following_redirects(to_httpx_url(info.url))
    with closing(response):
        status = response.status_code
        if not 200 <= status < 300:
            raise RemoteFetchError(f"the MEGA file server answered HTTP {status}")
        decryptor = Cipher(algorithms.AES(aes_key), modes.CTR(counter_block)).decryptor()
        return write_chunks(
            (pace or Pace()).paced(response.iter_bytes()),
            dest_dir,
            filename,
            max_bytes,
            transform=decryptor.update,
            expected_size=info.size,
        )
