"""Outputs that are not audio: a finished file (MIDI, text, subtitles) that a recipe hands back as it is.

A recipe's output is either audio (an array the runner encodes in the job's output format) or a `Document`,
whose bytes are stored unchanged under its own extension: a MIDI is a MIDI whatever output format was asked.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DocumentKind:
    extension: str
    label: str  # how `separation/get`'s `output_format` names it: "<extension> (<what>)", as audio formats do
    content_type: str


DOCUMENT_KINDS: dict[str, DocumentKind] = {
    k.extension: k
    for k in (
        DocumentKind("mid", "mid (MIDI)", "audio/midi"),
        DocumentKind("txt", "txt (text)", "text/plain; charset=utf-8"),
        DocumentKind("srt", "srt (subtitles)", "application/x-subrip"),
        DocumentKind("json", "json (segments)", "application/json"),
    )
}


@dataclass(frozen=True)
class Document:
    """A finished output file: its bytes, its kind (an extension of DOCUMENT_KINDS) and its label in `files[]`."""

    kind: str
    data: bytes
    label: str | None = None  # files[].type; None: the catalog's label of the stem, or the stem's name

    def __post_init__(self) -> None:
        if self.kind not in DOCUMENT_KINDS:
            raise ValueError(f"unknown document kind {self.kind!r}; known: {', '.join(DOCUMENT_KINDS)}")

    @property
    def extension(self) -> str:
        return DOCUMENT_KINDS[self.kind].extension
