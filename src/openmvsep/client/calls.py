"""The API's calls described once, without I/O: the sync and async clients only send them.

A `Call` says what to send and how to read the answer; `read_answer` turns an HTTP answer into the parsed body or
an `MVSepError` that carries the server's own message.
"""

from __future__ import annotations

import email.utils
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar, Union

import httpx

from . import models
from .errors import MVSepError, NotFound, TooManyJobs, Unavailable, says_too_many_jobs, server_message

T = TypeVar("T")

# An upload: a path (opened afresh for each attempt, so a retried request sends the whole file again) or bytes.
Upload = Union[str, Path, bytes]
# Told (bytes sent so far, bytes to send) as an upload goes out; a retried attempt starts again from 0.
UploadProgress = Callable[[int, int], None]


@dataclass
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)
    # Idempotent calls are retried on 5xx and broken connections too; others only on 429, which MVSep answers before
    # doing anything. Creating twice would make two jobs and two charges.
    idempotent: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    # Calls whose answer is a bare JSON array or object with no `success` key (algorithms, news, demo, queue).
    bare: bool = False
    # Creates: a refusal that says the account runs too many jobs is raised as TooManyJobs.
    starts_a_job: bool = False
    on_upload: UploadProgress | None = None


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) for k, v in values.items() if v is not None and v != ""}


def open_files(call: Call[Any]) -> tuple[dict[str, Any], list[IO[bytes]]]:
    """The `files=` argument for httpx, and the handles to close after the attempt."""
    out: dict[str, Any] = {}
    handles: list[IO[bytes]] = []
    meter = _Meter(call.on_upload, call.files) if call.on_upload else None
    for name, upload in call.files.items():
        handle: Any
        if isinstance(upload, bytes):
            filename, handle = f"{name}.bin", (io.BytesIO(upload) if meter else upload)
        else:
            filename, handle = Path(upload).name, open(upload, "rb")
            handles.append(handle)
        out[name] = (filename, meter.watch(name, handle) if meter else handle, "application/octet-stream")
    return out, handles


class _Meter:
    """Counts the bytes httpx reads from the upload files as it streams the request (it reads each 64 KiB piece
    just before sending it) and reports the sum."""

    def __init__(self, report: UploadProgress, files: dict[str, Upload]):
        self.report = report
        self.total = sum(len(u) if isinstance(u, bytes) else Path(u).stat().st_size for u in files.values())
        self.read: dict[str, int] = {}

    def watch(self, name: str, handle: IO[bytes]) -> _Metered:
        self.read[name] = 0
        return _Metered(handle, lambda position: self._moved(name, position))

    def _moved(self, name: str, position: int) -> None:
        self.read[name] = position
        self.report(sum(self.read.values()), self.total)


class _Metered:
    """A file handle that says where it is after each read or seek; everything else is the handle's own (httpx
    asks `fileno()` or `seek`/`tell` for the length)."""

    def __init__(self, handle: IO[bytes], moved: Callable[[int], None]):
        self._handle = handle
        self._moved = moved

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._moved(self._handle.tell())
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._handle.seek(offset, whence)
        self._moved(position)
        return position

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def read_answer(response: httpx.Response, call: Call[Any]) -> Any:
    """The JSON body of a successful answer; an MVSepError with the server's message otherwise."""
    try:
        body = response.json()
    except ValueError:
        snippet = response.text[:200].strip()
        raise (Unavailable if response.status_code >= 500 else MVSepError)(
            f"HTTP {response.status_code} from {call.path}: not JSON ({snippet or 'empty body'})",
            status_code=response.status_code,
            body=response.text,
        ) from None
    failed = response.status_code >= 400 or (isinstance(body, dict) and body.get("success") is False)
    if not failed:
        if not call.bare and not isinstance(body, dict):
            raise MVSepError(f"unexpected answer from {call.path}: {str(body)[:200]}", status_code=200, body=body)
        return body
    message = server_message(body) or f"HTTP {response.status_code} from {call.path}"
    if (isinstance(body, dict) and body.get("status") == "not_found") or response.status_code == 404:
        raise NotFound(message, status_code=response.status_code, body=body)
    if response.status_code >= 500:
        raise Unavailable(message, status_code=response.status_code, body=body)
    if call.starts_a_job and says_too_many_jobs(message):
        raise TooManyJobs(message, status_code=response.status_code, body=body)
    raise MVSepError(message, status_code=response.status_code, body=body)


@dataclass
class RetryPolicy:
    attempts: int = 5
    backoff: float = 1.0  # first wait; doubles each time
    max_wait: float = 60.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds before attempt `attempt + 1`: the server's Retry-After when it gives one, else exponential."""
        if response is not None:
            after = retry_after(response.headers.get("Retry-After"))
            if after is not None:
                return min(after, self.max_wait)
        return min(self.backoff * (2**attempt), self.max_wait)


def retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def should_retry(call: Call[Any], response: httpx.Response | None) -> bool:
    """`response` None means the connection broke before an answer."""
    if response is not None and response.status_code == 429:
        return True
    # A create that carries an Idempotency-Key may be sent again: a server that honours the key answers the first
    # job instead of making a second one (and one that ignores the header is the caller's informed choice).
    if not (call.idempotent or "Idempotency-Key" in call.headers):
        return False
    return response is None or response.status_code >= 500


# ---- the endpoints of CONTRACT §2 -----------------------------------------------------------------------------


def create(
    token: str,
    sep_type: int,
    audiofile: Upload | None = None,
    *,
    url: str | None = None,
    remote_type: str | None = None,
    add_opt1: str | None = None,
    add_opt2: str | None = None,
    add_opt3: str | None = None,
    add_opt4: str | None = None,
    output_format: int | None = None,
    is_demo: bool | None = None,
    webhook_url: str | None = None,
    extra_files: dict[str, Upload] | None = None,
    idempotency_key: str | None = None,
    on_upload: UploadProgress | None = None,
) -> Call[models.CreatedJob]:
    data = _clean(
        {
            "api_token": token,
            "sep_type": sep_type,
            "url": url,
            "remote_type": remote_type,
            "add_opt1": add_opt1,
            "add_opt2": add_opt2,
            "add_opt3": add_opt3,
            "add_opt4": add_opt4,
            "output_format": output_format,
            "is_demo": None if is_demo is None else int(is_demo),
            "webhook_url": webhook_url,
        }
    )
    files: dict[str, Upload] = dict(extra_files or {})
    if audiofile is not None:
        files["audiofile"] = audiofile
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Call(
        "POST",
        "/api/separation/create",
        models.CreatedJob.from_json,
        data=data,
        files=files,
        headers=headers,
        starts_a_job=True,
        on_upload=on_upload,
    )


def get(hash_value: str, token: str | None = None) -> Call[models.JobStatus]:
    params = _clean({"hash": hash_value, "api_token": token})
    return Call("GET", "/api/separation/get", models.JobStatus.from_json, params=params, idempotent=True)


def get_remote(hash_value: str) -> Call[models.RemoteStatus]:
    return Call(
        "GET", "/api/separation/get-remote", models.RemoteStatus.from_json, params={"hash": hash_value}, idempotent=True
    )


def cancel(token: str, hash_value: str) -> Call[models.Message]:
    return Call(
        "POST", "/api/separation/cancel", models.Message.from_json, data={"api_token": token, "hash": hash_value}
    )


def delete(token: str, hash_value: str) -> Call[models.Message]:
    return Call(
        "POST", "/api/separation/delete", models.Message.from_json, data={"api_token": token, "hash": hash_value}
    )


def _array(parse: Callable[[Any], T]) -> Callable[[Any], list[T]]:
    def read(body: Any) -> list[T]:
        if isinstance(body, dict):  # tolerate a {data: [...]} wrapper
            body = body.get("data")
        return [parse(x) for x in body] if isinstance(body, list) else []

    return read


def algorithms(scopes: str | None = None, token: str | None = None) -> Call[list[models.Algorithm]]:
    params = _clean({"scopes": scopes, "api_token": token})
    return Call(
        "GET", "/api/app/algorithms", _array(models.Algorithm.from_json), params=params, idempotent=True, bare=True
    )


def news(lang: str | None = None, start: int | None = None, limit: int | None = None) -> Call[list[models.NewsItem]]:
    params = _clean({"lang": lang, "start": start, "limit": limit})
    return Call("GET", "/api/app/news", _array(models.NewsItem.from_json), params=params, idempotent=True, bare=True)


def demo(start: int | None = None, limit: int | None = None) -> Call[list[models.DemoItem]]:
    params = _clean({"start": start, "limit": limit})
    return Call("GET", "/api/app/demo", _array(models.DemoItem.from_json), params=params, idempotent=True, bare=True)


def queue(token: str | None = None) -> Call[models.QueueInfo]:
    params = _clean({"api_token": token})
    return Call("GET", "/api/app/queue", models.QueueInfo.from_json, params=params, idempotent=True, bare=True)


def user(token: str) -> Call[models.User]:
    return Call("GET", "/api/app/user", models.User.from_json, params={"api_token": token}, idempotent=True)


def history(token: str, start: int | None = None, limit: int | None = None) -> Call[list[models.HistoryItem]]:
    params = _clean({"api_token": token, "start": start, "limit": limit})
    return Call(
        "GET", "/api/app/separation_history", _array(models.HistoryItem.from_json), params=params, idempotent=True
    )


def toggle(token: str, name: str) -> Call[models.Message]:
    """enable_premium, disable_premium, enable_long_filenames, disable_long_filenames."""
    if name not in ("enable_premium", "disable_premium", "enable_long_filenames", "disable_long_filenames"):
        raise ValueError(f"unknown profile toggle {name!r}")
    return Call("POST", f"/api/app/{name}", models.Message.from_json, data={"api_token": token})


def login(email: str, password: str) -> Call[models.User]:
    return Call("POST", "/api/app/login", models.User.from_json, data={"email": email, "password": password})


def register(name: str, email: str, password: str) -> Call[models.Message]:
    data = {"name": name, "email": email, "password": password, "password_confirmation": password}
    return Call("POST", "/api/app/register", models.Message.from_json, data=data)


def qc_queue(start: int | None = None, limit: int | None = None) -> Call[list[models.QcEntry]]:
    params = _clean({"start": start, "limit": limit})
    return Call(
        "GET", "/api/quality_checker/queue", _array(models.QcEntry.from_json), params=params, idempotent=True, bare=True
    )


def qc_leaderboard(
    dataset_type: int | None = None,
    start: int | None = None,
    limit: int | None = None,
    algo_name_filter: str | None = None,
    sort: str | None = None,
) -> Call[models.QcLeaderboard]:
    params = _clean(
        {
            "dataset_type": dataset_type,
            "start": start,
            "limit": limit,
            "algo_name_filter": algo_name_filter,
            "sort": sort,
        }
    )
    return Call(
        "GET", "/api/quality_checker/leaderboard", models.QcLeaderboard.from_json, params=params, idempotent=True
    )


def _entry(body: Any) -> models.QcEntry:
    data = body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else body
    return models.QcEntry.from_json(data)


def qc_entry(entry_id: int) -> Call[models.QcEntry]:
    return Call("GET", "/api/quality_checker/entry", _entry, params={"id": str(entry_id)}, idempotent=True, bare=True)


def qc_add(
    token: str,
    zipfile: Upload,
    algo_name: str,
    main_text: str,
    password: str,
    dataset_type: int = 0,
    ensemble: bool = False,
    on_upload: UploadProgress | None = None,
) -> Call[models.QcAdded]:
    data = _clean(
        {
            "api_token": token,
            "algo_name": algo_name,
            "main_text": main_text,
            "dataset_type": dataset_type,
            "password": password,
            "ensemble": int(ensemble),
        }
    )
    return Call(
        "POST",
        "/api/quality_checker/add",
        models.QcAdded.from_json,
        data=data,
        files={"zipfile": zipfile},
        on_upload=on_upload,
    )


def qc_delete(entry_id: int, password: str, token: str | None = None) -> Call[models.Message]:
    data = _clean({"id": entry_id, "password": password, "api_token": token})
    return Call("POST", "/api/quality_checker/delete", models.Message.from_json, data=data)


# Downloads are plain GETs of public URLs: idempotent, retried like any read.
DOWNLOAD: Call[Any] = Call("GET", "download", lambda body: body, idempotent=True)


def read_error_text(response: httpx.Response, call: Call[Any]) -> str:
    """The server's message for a refused call, or a description of the HTTP status when it gave none."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return server_message(body) or f"HTTP {response.status_code} from {call.path}"
