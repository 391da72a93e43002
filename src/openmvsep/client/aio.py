"""`AsyncMVSepClient`: the asyncio client; the same calls as `MVSepClient`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from . import calls, models, transfer
from .calls import Call, RetryPolicy, Upload
from .errors import JobFailed, MVSepError, RateLimited, Unavailable
from .sync import DEFAULT_BASE_URL, USER_AGENT, base_url_of

T = TypeVar("T")


class AsyncMVSepClient:
    """A client for any server that speaks MVSep's API (mvsep.com or openmvsep).

    >>> async with AsyncMVSepClient("https://mvsep.com", token="…") as mv:
    ...     job = await mv.create("song.flac", sep_type=40, add_opt1="81", output_format=2)
    ...     done = await mv.wait(job.hash, on_progress=print)
    ...     await mv.download_all(done, Path("stems"))
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.base_url = base_url_of(base_url)
        self.token = token
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=timeout, headers={"User-Agent": USER_AGENT}, follow_redirects=True
        )

    async def __aenter__(self) -> AsyncMVSepClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # ---- sending -------------------------------------------------------------------------------------------

    async def call(self, call: Call[T]) -> T:
        """Send one call, retrying per the policy, and parse its answer."""
        last: httpx.Response | None = None
        for attempt in range(self.retry.attempts):
            files, handles = calls.open_files(call)
            try:
                last = await self._http.request(
                    call.method,
                    self.base_url + call.path,
                    params=call.params or None,
                    data=call.data or None,
                    files=files or None,
                    headers=call.headers or None,
                )
            except httpx.TransportError as exc:
                if not calls.should_retry(call, None) or attempt + 1 == self.retry.attempts:
                    raise Unavailable(f"{call.path}: {exc.__class__.__name__}: {exc}") from exc
                last = None
                await self._sleep(self.retry.delay(attempt, None))
                continue
            finally:
                for handle in handles:
                    handle.close()
            if calls.should_retry(call, last) and attempt + 1 < self.retry.attempts:
                await self._sleep(self.retry.delay(attempt, last))
                continue
            break
        assert last is not None
        if last.status_code == 429:
            raise RateLimited(calls.read_error_text(last, call), status_code=429, body=last.text)
        return call.parse(calls.read_answer(last, call))

    def _token(self) -> str:
        if not self.token:
            raise MVSepError("this call needs an API token (token=…)")
        return self.token

    # ---- separations ---------------------------------------------------------------------------------------

    async def create(self, audiofile: Upload | None, sep_type: int, **options: Any) -> models.CreatedJob:
        """Start a separation. `options`: add_opt1…4, output_format, is_demo, url, remote_type, webhook_url,
        on_upload(sent, total) to follow the upload, and idempotency_key: with one, a 5xx or a broken connection is
        retried too (the server answers the first job). A refusal because the account runs as many jobs as its plan
        allows raises TooManyJobs."""
        job = await self.call(calls.create(self._token(), sep_type, audiofile, **options))
        if not job.hash:
            raise MVSepError("the server accepted the job but sent no hash", body=job.raw)
        return job

    async def get(self, hash_value: str) -> models.JobStatus:
        return await self.call(calls.get(hash_value, self.token))

    async def get_remote(self, hash_value: str) -> models.RemoteStatus:
        return await self.call(calls.get_remote(hash_value))

    async def cancel(self, hash_value: str) -> models.Message:
        return await self.call(calls.cancel(self._token(), hash_value))

    async def delete(self, hash_value: str) -> models.Message:
        return await self.call(calls.delete(self._token(), hash_value))

    async def wait(
        self,
        hash_value: str,
        *,
        on_progress: Callable[[models.JobStatus], object] | None = None,
        poll_interval: float = 5.0,
        timeout: float | None = None,
    ) -> models.JobStatus:
        """Poll until done (returned) or failed (JobFailed), calling `on_progress` with every answer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = await self.get(hash_value)
            if on_progress is not None:
                result = on_progress(status)
                if asyncio.iscoroutine(result):  # a coroutine callback is awaited
                    await result
            if status.done:
                return status
            if status.status == "failed":
                raise JobFailed(status.message or f"separation {hash_value} failed", body=status.raw)
            if not status.active:
                raise MVSepError(f"separation {hash_value}: unexpected status {status.status!r}", body=status.raw)
            if deadline is not None and time.monotonic() + poll_interval > deadline:
                raise TimeoutError(f"separation {hash_value} still {status.status} after {timeout} s")
            await self._sleep(poll_interval)

    # ---- downloads -----------------------------------------------------------------------------------------

    async def download(
        self, file: models.OutputFile | str, dest: Path, *, on_bytes: transfer.DownloadProgress | None = None
    ) -> Path:
        """Download one file into the folder `dest` (or to the path `dest`), resuming a `.part` left by a cut.
        `on_bytes(have, total)` is told the bytes on disk as they arrive (total: None until the server says)."""
        target = transfer.target_for(file, Path(dest))
        if target.complete():
            return target.path
        target.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(self.retry.attempts):
            have = target.have()
            try:
                async with self._http.stream("GET", target.url, headers=target.request_headers()) as response:
                    total = transfer.total_size(response, have)
                    if response.status_code == 416:  # nothing after what we have: whole, or a stale .part
                        if total != have:
                            target.part.unlink(missing_ok=True)
                            continue
                    elif response.status_code >= 400:
                        await response.aread()
                        if calls.should_retry(calls.DOWNLOAD, response) and attempt + 1 < self.retry.attempts:
                            await self._sleep(self.retry.delay(attempt, response))
                            continue
                        text = calls.read_error_text(response, calls.DOWNLOAD)
                        raise (Unavailable if response.status_code >= 500 else MVSepError)(
                            text, status_code=response.status_code
                        )
                    else:
                        resumed = transfer.resumes(response, have)
                        got = have if resumed else 0
                        with open(target.part, "ab" if resumed else "wb") as out:
                            async for chunk in response.aiter_bytes():
                                out.write(chunk)
                                got += len(chunk)
                                if on_bytes is not None:
                                    on_bytes(got, total)
            except httpx.TransportError:
                if attempt + 1 == self.retry.attempts:
                    break
                await self._sleep(self.retry.delay(attempt, None))
                continue
            if transfer.finish(target, total):
                return target.path
        raise Unavailable(
            f"{target.url}: the download broke off {self.retry.attempts} times ({target.have()} bytes kept; "
            "the next try resumes there)"
        )

    async def download_all(
        self, job: models.JobStatus, dest: Path, *, on_bytes: transfer.DownloadProgress | None = None
    ) -> list[Path]:
        """Every output file of a done job into the folder `dest`; files already there are skipped.
        `on_bytes(have, total)` counts all the files together (total: None unless the server gave every size)."""
        if not job.done:
            raise MVSepError(f"separation {job.hash} is {job.status}, not done")
        Path(dest).mkdir(parents=True, exist_ok=True)
        expected = transfer.expected_total(job.files)
        paths: list[Path] = []
        before = 0  # bytes of the files already finished
        for f in job.files:
            report = None if on_bytes is None else transfer.offset(on_bytes, before, expected)
            path = await self.download(f, Path(dest), on_bytes=report)
            paths.append(path)
            before += path.stat().st_size
            if on_bytes is not None:
                on_bytes(before, expected)
        return paths

    # ---- account and catalogue -----------------------------------------------------------------------------

    async def algorithms(self, scopes: str | None = None) -> list[models.Algorithm]:
        return await self.call(calls.algorithms(scopes, self.token))

    async def user(self) -> models.User:
        return await self.call(calls.user(self._token()))

    async def history(self, start: int | None = None, limit: int | None = None) -> list[models.HistoryItem]:
        return await self.call(calls.history(self._token(), start, limit))

    async def queue(self) -> models.QueueInfo:
        return await self.call(calls.queue(self.token))

    async def news(
        self, lang: str | None = None, start: int | None = None, limit: int | None = None
    ) -> list[models.NewsItem]:
        return await self.call(calls.news(lang, start, limit))

    async def demo(self, start: int | None = None, limit: int | None = None) -> list[models.DemoItem]:
        return await self.call(calls.demo(start, limit))

    async def toggle(self, name: str) -> models.Message:
        return await self.call(calls.toggle(self._token(), name))

    async def login(self, email: str, password: str) -> models.User:
        """Log in; the client keeps the account's API token when the server gives one."""
        account = await self.call(calls.login(email, password))
        if account.api_token:
            self.token = account.api_token
        return account

    async def register(self, name: str, email: str, password: str) -> models.Message:
        return await self.call(calls.register(name, email, password))

    # ---- Quality Checker -----------------------------------------------------------------------------------

    async def qc_queue(self, start: int | None = None, limit: int | None = None) -> list[models.QcEntry]:
        return await self.call(calls.qc_queue(start, limit))

    async def qc_leaderboard(self, dataset_type: int | None = None, **filters: Any) -> models.QcLeaderboard:
        return await self.call(calls.qc_leaderboard(dataset_type, **filters))

    async def qc_entry(self, entry_id: int) -> models.QcEntry:
        return await self.call(calls.qc_entry(entry_id))

    async def qc_add(
        self, zipfile: Upload, algo_name: str, main_text: str, password: str, **options: Any
    ) -> models.QcAdded:
        return await self.call(calls.qc_add(self._token(), zipfile, algo_name, main_text, password, **options))

    async def qc_delete(self, entry_id: int, password: str) -> models.Message:
        return await self.call(calls.qc_delete(entry_id, password, self.token))
