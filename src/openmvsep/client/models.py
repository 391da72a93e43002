"""Typed views of MVSep's answers.

Each dataclass keeps the whole JSON object in `raw`, so keys this client does not know yet are never lost. Parsing is
lenient about types (MVSep sends numbers as strings in places, objects may be missing): a field it cannot read is
None, never an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ACTIVE_STATUSES = ("waiting", "processing", "distributing", "merging")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


@dataclass
class OutputFile:
    type: str
    url: str
    download: str
    size: str | None = None
    bytes: int | None = None  # exact length, when the server gives it: downloads are checked against it
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, obj: Any) -> OutputFile:
        d = _dict(obj)
        url = _str(d.get("url")) or ""
        name = _str(d.get("download")) or url.rsplit("/", 1)[-1]
        return cls(_str(d.get("type")) or "", url, name, _str(d.get("size")), _int(d.get("bytes")), d)


@dataclass
class CreatedJob:
    hash: str
    link: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Any) -> CreatedJob:
        data = _dict(_dict(body).get("data"))
        return cls(_str(data.get("hash")) or "", _str(data.get("link")), _dict(body))


@dataclass
class JobStatus:
    """One answer of `separation/get`."""

    status: str
    hash: str | None = None
    message: str | None = None
    queue_count: int | None = None
    current_order: int | None = None
    finished_chunks: int | None = None
    all_chunks: int | None = None
    algorithm: str | None = None
    output_format: str | None = None
    size: str | None = None
    date: str | None = None
    files: list[OutputFile] = field(default_factory=list)
    input_file: dict[str, Any] | None = None
    # openmvsep's additions (None from a server that does not send them, mvsep.com included): how far the job is,
    # 0..100 and never lower than in an earlier answer, and the seconds it is expected to take still.
    progress: int | None = None
    eta_seconds: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def done(self) -> bool:
        return self.status == "done"

    @classmethod
    def from_json(cls, body: Any) -> JobStatus:
        b = _dict(body)
        data = _dict(b.get("data"))
        return cls(
            status=_str(b.get("status")) or "",
            hash=_str(data.get("hash")),
            message=_str(data.get("message")),
            queue_count=_int(data.get("queue_count")),
            current_order=_int(data.get("current_order")),
            finished_chunks=_int(data.get("finished_chunks")),
            all_chunks=_int(data.get("all_chunks")),
            algorithm=_str(data.get("algorithm")),
            output_format=_str(data.get("output_format")),
            size=_str(data.get("size")),
            date=_str(data.get("date")),
            files=[OutputFile.from_json(f) for f in _list(data.get("files"))],
            input_file=data.get("input_file") if isinstance(data.get("input_file"), dict) else None,
            progress=_int(data.get("progress")),
            eta_seconds=_int(data.get("eta_seconds")),
            raw=b,
        )


@dataclass
class RemoteStatus:
    """One answer of `separation/get-remote`: once done, `hash` is the result's hash for `get`."""

    status: str
    hash: str | None = None
    link: str | None = None
    message: str | None = None
    queue_count: int | None = None
    current_order: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Any) -> RemoteStatus:
        b = _dict(body)
        data = _dict(b.get("data"))
        return cls(
            _str(b.get("status")) or "",
            _str(data.get("hash")),
            _str(data.get("link")),
            _str(data.get("message")),
            _int(data.get("queue_count")),
            _int(data.get("current_order")),
            b,
        )


@dataclass
class AlgorithmField:
    name: str  # the form field to fill: add_opt1 … add_opt4
    text: str | None
    options: dict[str, str]  # option key → label, in the server's order
    default_key: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, obj: Any) -> AlgorithmField:
        d = _dict(obj)
        options: Any = d.get("options")
        if isinstance(options, str):  # MVSep sends the map as a JSON-encoded string
            try:
                options = json.loads(options)
            except ValueError:
                options = {}
        opts = {str(k): _str(v) or "" for k, v in _dict(options).items()}
        return cls(_str(d.get("name")) or "", _str(d.get("text")), opts, _str(d.get("default_key")), d)


@dataclass
class Algorithm:
    render_id: int  # the sep_type to send
    name: str
    id: int | None = None
    group: str | None = None
    price_coefficient: float | None = None
    is_active: bool = True
    description: str | None = None
    fields: list[AlgorithmField] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, obj: Any) -> Algorithm:
        d = _dict(obj)
        price: float | None
        try:
            price = float(d["price_coefficient"])
        except (KeyError, TypeError, ValueError):
            price = None
        descriptions = [_dict(x) for x in _list(d.get("algorithm_descriptions"))]
        description = _str(d.get("description")) or next(
            (_str(x.get("short_description")) for x in descriptions if x.get("short_description")), None
        )
        return cls(
            render_id=_int(d.get("render_id")) or 0,
            name=_str(d.get("name")) or "",
            id=_int(d.get("id")),
            group=_str(_dict(d.get("algorithm_group")).get("name")),
            price_coefficient=price,
            is_active=_int(d.get("is_active")) != 0,
            description=description,
            fields=[AlgorithmField.from_json(f) for f in _list(d.get("algorithm_fields"))],
            raw=d,
        )


@dataclass
class User:
    name: str | None
    email: str | None
    api_token: str | None  # null on MVSep until the user generated one on the site
    premium_minutes: int | None
    premium_enabled: bool
    long_filenames_enabled: bool
    current_queue: list[Any] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Any) -> User:
        d = _dict(_dict(body).get("data"))
        return cls(
            _str(d.get("name")),
            _str(d.get("email")),
            _str(d.get("api_token")),
            _int(d.get("premium_minutes")),
            bool(_int(d.get("premium_enabled"))),
            bool(_int(d.get("long_filenames_enabled"))),
            _list(d.get("current_queue")),
            d,
        )


@dataclass
class HistoryItem:
    id: int | None
    hash: str
    created_at: str | None
    job_exists: bool
    credits: int | None
    time_left: int | None  # hours until the files are deleted
    algorithm: str | None
    render_id: int | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, obj: Any) -> HistoryItem:
        d = _dict(obj)
        algo = _dict(d.get("algorithm"))
        return cls(
            _int(d.get("id")),
            _str(d.get("hash")) or "",
            _str(d.get("created_at")),
            bool(d.get("job_exists")),
            _int(d.get("credits")),
            _int(d.get("time_left")),
            _str(algo.get("name")),
            _int(algo.get("render_id")),
            d,
        )


@dataclass
class QueueInfo:
    queue: dict[str, Any]
    plan: dict[str, Any] | None
    free_separations: dict[str, Any] | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Any) -> QueueInfo:
        b = _dict(body)
        plan = b.get("plan") if isinstance(b.get("plan"), dict) else b.get("current")
        free = b.get("free_separations")
        return cls(_dict(b.get("queue")), _dict(plan) or None, _dict(free) or None, b)


@dataclass
class NewsItem:
    id: int | None
    title: str | None
    lang: str | None
    text: str | None  # HTML
    created_at: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, obj: Any) -> NewsItem:
        d = _dict(obj)
        return cls(
            _int(d.get("id")),
            _str(d.get("title")),
            _str(d.get("lang")),
            _str(d.get("text")),
            _str(d.get("created_at")),
            d,
        )


@dataclass
class DemoItem:
    hash: str
    date: str | None
    input_audio: str | None
    algorithm: str | None
    render_id: int | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, obj: Any) -> DemoItem:
        d = _dict(obj)
        algo = _dict(d.get("algorithm"))
        return cls(
            _str(d.get("hash")) or "",
            _str(d.get("date")),
            _str(d.get("input_audio")),
            _str(algo.get("name")),
            _int(algo.get("render_id")),
            d,
        )


@dataclass
class QcEntry:
    """A Quality Checker entry; its metrics (`sdr_vocals`, …) vary by dataset, so they stay in `metrics`/`raw`."""

    id: int | None
    algo_name: str | None
    dataset_type: int | None
    date: str | None
    msg: str | None
    metrics: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, obj: Any) -> QcEntry:
        d = _dict(obj)
        metrics = {k: v for k, v in d.items() if k.startswith("sdr_")}
        metrics.update(_dict(d.get("metrics")))
        return cls(
            _int(d.get("id")), _str(d.get("algo_name")), _int(d.get("dataset_type")), _str(d.get("date")),
            _str(d.get("msg")), metrics, d,
        )  # fmt: skip


@dataclass
class QcLeaderboard:
    entries: list[QcEntry]
    dataset_type: int | None
    sortables: list[str]
    sort: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Any) -> QcLeaderboard:
        b = _dict(body)
        return cls(
            [QcEntry.from_json(e) for e in _list(b.get("data"))],
            _int(b.get("dataset_type")),
            [str(s) for s in _list(b.get("sortables"))],
            _str(b.get("sort")),
            b,
        )


@dataclass
class QcAdded:
    id: int | None
    link: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Any) -> QcAdded:
        data = _dict(_dict(body).get("data"))
        return cls(_int(data.get("id")), _str(data.get("link")), _dict(body))


@dataclass
class Message:
    """A plain acknowledgement (`{success, message}` or `{success, data: {message}}`)."""

    success: bool
    message: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Any) -> Message:
        b = _dict(body)
        text = b.get("message") if isinstance(b.get("message"), str) else _dict(b.get("data")).get("message")
        return cls(bool(b.get("success")), _str(text), b)
