"""An opened audio input: the container, its first audio stream, and how positions map to it.

decode.py reads through it and probe.py describes it; both see the same stream, so a probed
length and a decoded length agree. AudioError lives here because opening is where bad input
first shows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av

from openmvsep.errors import UserError

PathLike = str | os.PathLike[str]


class AudioError(UserError):
    """Input that cannot be decoded; str(e) is a short human message (no tracebacks/paths)."""


# The one name ffmpeg gives every container of the MP4 family.
_MOV_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"

_LOSSLESS_CODECS = {"flac", "alac", "wavpack", "ape", "tta", "tak", "mlp", "truehd", "shorten"}
# A lossy decoder needs a few frames of history (MP3 bit reservoir, MDCT overlap) before its
# output equals a decode from the start; this much is decoded and thrown away before a seek
# target.
_LOSSY_PREROLL_SECONDS = 0.25


def _is_lossless(codec_name: str) -> bool:
    return codec_name.startswith("pcm_") or codec_name in _LOSSLESS_CODECS


class _Source:
    """One opened input: the container, its first audio stream and how to position in it."""

    def __init__(self, path: PathLike):
        self.path = os.fspath(path)
        self.container = _open_input(self.path)
        try:
            audio_streams = list(self.container.streams.audio)
            if not audio_streams:
                raise AudioError("The file contains no audio.")
            self.stream = audio_streams[0]
            ctx = self.stream.codec_context
            self.sample_rate = int(ctx.sample_rate or 0)
            self.channels = int(ctx.channels or 0)
            if self.sample_rate <= 0 or self.channels <= 0:
                raise AudioError("The audio stream could not be decoded.")
        except BaseException:
            self.container.close()
            raise
        self.format_name: str = self.container.format.name
        self.codec_name: str = ctx.codec.canonical_name  # "mp3", not the decoder's "mp3float"
        self.time_base: Fraction = self.stream.time_base or Fraction(1, self.sample_rate)
        self.origin_pts: int = self.stream.start_time or 0
        # The mov demuxer applies the edit list's start (encoder priming) but not its end, so
        # a decode runs on into the encoder's padding; its sample tables give the true length.
        self.total_frames: int | None = None
        if self.format_name == _MOV_FAMILY and self.stream.duration:
            self.total_frames = round(self.stream.duration * self.time_base * self.sample_rate)
        lossless = _is_lossless(self.codec_name)
        self.preroll_frames = 0 if lossless else round(_LOSSY_PREROLL_SECONDS * self.sample_rate)

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reopen(self) -> None:
        """Start again at the beginning (after a seek that cannot be trusted)."""
        self.container.close()
        self.container = _open_input(self.path)
        self.stream = self.container.streams.audio[0]

    def header_frames(self) -> int | None:
        """The length the headers claim (exact for WAV, FLAC, MP4 and LAME-tagged MP3)."""
        if self.total_frames is not None:
            return self.total_frames
        if self.stream.duration:
            return round(self.stream.duration * self.time_base * self.sample_rate)
        return None

    def position_of(self, pts: int) -> int:
        return round((pts - self.origin_pts) * self.time_base * self.sample_rate)

    def pts_of(self, position: int) -> int:
        return self.origin_pts + math.floor(Fraction(position, self.sample_rate) / self.time_base)


def _open_input(path: str) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    if os.path.getsize(path) == 0:
        raise AudioError("The file is empty.")
    try:
        return av.open(path, metadata_errors="replace")
    except av.FFmpegError:
        raise AudioError("The file is not in an audio format that can be read.") from None


def _decoded_frames(source: _Source, skip_before_pts: int | None = None) -> Iterator[Any]:
    """Decode the audio stream from wherever the container stands, tolerating damage.

    A damaged packet is skipped, as a player would; a read error ends the stream. Packets
    that end before `skip_before_pts` are read but not decoded.
    """
    stream = source.stream
    packets = source.container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError:
            break
        if (
            skip_before_pts is not None
            and packet.pts is not None
            and packet.duration
            and packet.pts + packet.duration <= skip_before_pts
        ):
            continue
        try:
            frames = packet.decode()
        except av.FFmpegError:
            continue
        yield from frames
    # The stream ended on a read error: drain what the decoder still holds.
    try:
        yield from stream.codec_context.decode(None)
    except av.FFmpegError:
        return
