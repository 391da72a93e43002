"""Audio I/O for the engine: decode what ffmpeg reads, resample with soxr, write MVSep's formats.

Decoding goes through PyAV for every input, so one code path gives one answer. Positions are
counted in samples at the file's own rate, and a segment read seeks when the container keeps
exact timestamps, so a slice read on its own equals the same slice of a full decode (and a
resampled segment equals, to float rounding, the same slice of a resampled full decode).
Everything streams: decoded frames, the soxr resampler and the encoders all work block by
block, so memory does not grow with the length of a track.

This module knows nothing of HTTP or databases.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
import soundfile
import soxr

PathLike = str | os.PathLike[str]

# --------------------------------------------------------------------------------------------
# Output formats (MVSep's `output_format` ids)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFormat:
    id: int
    label: str
    extension: str
    content_type: str


FORMATS: dict[int, OutputFormat] = {
    0: OutputFormat(0, "mp3 (320 kbps)", "mp3", "audio/mpeg"),
    1: OutputFormat(1, "wav (uncompressed, 16 bit)", "wav", "audio/wav"),
    2: OutputFormat(2, "flac (lossless, 16 bit)", "flac", "audio/flac"),
    3: OutputFormat(3, "m4a (lossy)", "m4a", "audio/mp4"),
    4: OutputFormat(4, "wav (uncompressed, 32 bit)", "wav", "audio/wav"),
    5: OutputFormat(5, "flac (lossless, 24 bit)", "flac", "audio/flac"),
}


class AudioError(Exception):
    """Input that cannot be decoded; str(e) is a short human message (no tracebacks/paths)."""


@dataclass
class AudioInfo:
    duration: float  # seconds
    sample_rate: int
    channels: int
    dataformat: str  # "mp3", "wav", "flac", "m4a", "aac", "ogg", ...
    bitrate: int  # bits/s
    lossless: bool
    bits_per_sample: int | None
    tags: dict[str, Any] = field(default_factory=dict)  # getID3-style, for `separation/get`


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

_MOV_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"

# Containers whose seek lands on a packet carrying its exact timestamp (sample tables,
# STREAMINFO/seek tables, byte offsets of PCM). After a seek there we trust the first pts.
_EXACT_SEEK_CONTAINERS = {"wav", "w64", "aiff", "caf", "flac", _MOV_FAMILY}
# Raw elementary streams: a seek there is a byte-position guess (an MP3 TOC, a bitrate
# estimate), but packets read in order carry exact timestamps. There we skip packets
# without decoding them instead of seeking.
_SKIP_PACKETS_CONTAINERS = {"mp3", "aac"}

_LOSSLESS_CODECS = {"flac", "alac", "wavpack", "ape", "tta", "tak", "mlp", "truehd", "shorten"}
# A lossy decoder needs a few frames of history (MP3 bit reservoir, MDCT overlap) before its
# output equals a decode from the start; this much is decoded and thrown away before a seek
# target.
_LOSSY_PREROLL_SECONDS = 0.25

# How many packets probe() will look at to find the first decodable frame.
_PROBE_PACKET_LIMIT = 500


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


def _frame_to_array(frame: Any, channels: int) -> np.ndarray:
    """A decoded frame as float32 (channels, samples), integer PCM scaled by a power of two."""
    data = frame.to_ndarray()
    frame_channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        data = data.reshape(-1, frame_channels).T
    data = _as_float32(data)
    if frame_channels != channels:  # a stream that changes layout mid-way (broadcast AAC)
        data = _match_channels(data, channels)
    return np.ascontiguousarray(data)  # packed formats arrive interleaved


def _as_float32(data: np.ndarray) -> np.ndarray:
    if data.dtype == np.float32:
        return data
    if data.dtype == np.float64:
        return data.astype(np.float32)
    if data.dtype == np.int16:
        return data.astype(np.float32) * np.float32(2.0**-15)
    if data.dtype == np.int32:
        # 24-bit audio arrives left-aligned in int32, so this is exact for it.
        return (data.astype(np.float64) * 2.0**-31).astype(np.float32)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) * np.float32(2.0**-7)
    if data.dtype == np.int64:
        return (data.astype(np.float64) * 2.0**-63).astype(np.float32)
    raise AudioError("The audio uses a sample format that is not supported.")


def _match_channels(data: np.ndarray, channels: int) -> np.ndarray:
    if data.shape[0] == 1:
        return np.repeat(data, channels, axis=0)
    if data.shape[0] > channels:
        return data[:channels]
    padding = np.zeros((channels - data.shape[0], data.shape[1]), dtype=data.dtype)
    return np.concatenate([data, padding])


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


def _positioned_frames(source: _Source, start_frame: int) -> Iterator[tuple[int, np.ndarray]]:
    """(position, samples) pairs at the native rate, from the frame that holds `start_frame`.

    Positions are sample indices counted from the first decoded sample of the file.
    """
    target = max(0, start_frame - source.preroll_frames)
    frames: Iterator[Any] | None = None
    if target > 0 and source.format_name in _EXACT_SEEK_CONTAINERS:
        frames = _frames_after_seek(source, target)
    elif target > 0 and source.format_name in _SKIP_PACKETS_CONTAINERS:
        frames = _decoded_frames(source, skip_before_pts=source.pts_of(target))

    if frames is not None:
        first = next(frames, None)
        if first is None:  # the target lies past the end
            return
        position = source.position_of(first.pts) if first.pts is not None else None
        if position is not None and position <= target:
            for frame in itertools.chain([first], frames):
                yield position, _frame_to_array(frame, source.channels)
                position += frame.samples
            return
        # No timestamp, or one past the target: this position cannot be trusted.
        source.reopen()

    # Count samples from the start: exact for every container.
    position = 0
    for frame in _decoded_frames(source):
        yield position, _frame_to_array(frame, source.channels)
        position += frame.samples
    if position == 0:
        raise AudioError("The file contains no decodable audio.")


def _frames_after_seek(source: _Source, target: int) -> Iterator[Any]:
    """Frames from a keyframe at or before `target`; from the start when seeking fails."""
    try:
        source.container.seek(source.pts_of(target), stream=source.stream)
    except av.FFmpegError:
        source.reopen()
    return _decoded_frames(source)


def _native_segment(source: _Source, start_frame: int, end_frame: int | None) -> Iterator[np.ndarray]:
    """Decoded audio covering exactly [start_frame, end_frame) at the native rate."""
    if source.total_frames is not None:
        end_frame = source.total_frames if end_frame is None else min(end_frame, source.total_frames)
    if end_frame is not None and end_frame <= start_frame:
        return
    for position, samples in _positioned_frames(source, start_frame):
        count = samples.shape[1]
        if position + count <= start_frame:
            continue
        if end_frame is not None and position >= end_frame:
            break
        low = max(start_frame - position, 0)
        high = count if end_frame is None else min(count, end_frame - position)
        yield samples[:, low:high]


class _StreamingResampler:
    """soxr in streaming mode: output equals a one-shot soxr.resample of the whole signal."""

    def __init__(self, in_rate: int, out_rate: int, channels: int):
        self._resampler = soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32", quality="HQ")
        self._channels = channels

    def push(self, block: np.ndarray) -> np.ndarray:
        out = self._resampler.resample_chunk(np.ascontiguousarray(block.T), last=False)
        return np.ascontiguousarray(out.T)

    def finish(self) -> np.ndarray:
        empty = np.zeros((0, self._channels), dtype=np.float32)
        out = self._resampler.resample_chunk(empty, last=True)
        return np.ascontiguousarray(out.T)


def _resampled(blocks: Iterable[np.ndarray], in_rate: int, out_rate: int, channels: int) -> Iterator[np.ndarray]:
    resampler = _StreamingResampler(in_rate, out_rate, channels)
    for block in blocks:
        out = resampler.push(block)
        if out.shape[1]:
            yield out
    tail = resampler.finish()
    if tail.shape[1]:
        yield tail


def _segment_frames(rate: int, start: float, duration: float | None) -> tuple[int, int | None]:
    """Sample range of [start, start+duration); rounding the two ends (not the length) keeps
    adjacent segments adjacent."""
    if start < 0:
        raise ValueError("start must not be negative")
    if duration is not None and duration < 0:
        raise ValueError("duration must not be negative")
    start_frame = round(start * rate)
    end_frame = None if duration is None else round((start + duration) * rate)
    return start_frame, end_frame


@dataclass
class _Decoding:
    """A prepared read: its output rate and channels, its blocks (any size) and, when the
    headers tell, how many frames it should give."""

    rate: int
    channels: int
    blocks: Iterator[np.ndarray]
    expected_frames: int | None


# Native audio decoded beyond each end of a resampled segment, so that soxr's filter sees the
# same neighbourhood as in a whole-file resample (its support is far shorter than this).
_RESAMPLE_CONTEXT_SECONDS = 0.1


@dataclass(frozen=True)
class _ResampleWindow:
    """Which native frames to resample for output frames [out_start, out_end).

    The native window starts on a frame that maps to a whole output frame (a multiple of
    in_rate / gcd), so the window's output lines up sample for sample with a resample of the
    whole file, and adjacent segments join without a seam.
    """

    native_start: int
    native_end: int | None
    out_offset: int  # output index of the window's first output frame

    @classmethod
    def plan(cls, in_rate: int, out_rate: int, out_start: int, out_end: int | None) -> _ResampleWindow:
        common = math.gcd(in_rate, out_rate)
        in_step, out_step = in_rate // common, out_rate // common
        context_steps = math.ceil(_RESAMPLE_CONTEXT_SECONDS * in_rate / in_step)
        first_step = max(0, out_start // out_step - context_steps)
        native_end = None
        if out_end is not None:
            native_end = (-(-out_end // out_step) + context_steps) * in_step
        return cls(first_step * in_step, native_end, first_step * out_step)


def _window(blocks: Iterable[np.ndarray], skip: int, keep: int | None) -> Iterator[np.ndarray]:
    """Drop the first `skip` frames of a block stream, then pass on at most `keep` frames."""
    for block in blocks:
        if skip >= block.shape[1]:
            skip -= block.shape[1]
            continue
        block = block[:, skip:]
        skip = 0
        if keep is not None:
            block = block[:, :keep]
            keep -= block.shape[1]
        if block.shape[1]:
            yield block
        if keep == 0:
            return


def _decoding(path: PathLike, sample_rate: int | None, start: float, duration: float | None) -> _Decoding:
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    source = _Source(path)  # opened now, so bad input fails at the call, not at first next()
    in_rate = source.sample_rate
    out_rate = sample_rate or in_rate
    # Segment ends are rounded at the output rate, so segments of the output stay adjacent.
    out_start, out_end = _segment_frames(out_rate, start, duration)
    if out_rate == in_rate:
        window = _ResampleWindow(out_start, out_end, out_start)
    else:
        window = _ResampleWindow.plan(in_rate, out_rate, out_start, out_end)

    def blocks() -> Iterator[np.ndarray]:
        with source:
            native = _native_segment(source, window.native_start, window.native_end)
            if out_rate == in_rate:
                yield from native
                return
            resampled = _resampled(native, in_rate, out_rate, source.channels)
            keep = None if out_end is None else max(0, out_end - out_start)
            yield from _window(resampled, out_start - window.out_offset, keep)

    expected = None
    total = source.header_frames()
    if total is not None:
        total_out = round(total * out_rate / in_rate)  # soxr's output length
        expected = max(0, min(total_out, total_out if out_end is None else out_end) - out_start)
    return _Decoding(out_rate, source.channels, blocks(), expected)


def _gather(decoding: _Decoding) -> np.ndarray:
    """All blocks in one (channels, frames) array. When the headers gave the length, blocks
    are copied into place as they come, so a long track is not held twice."""
    expected = decoding.expected_frames
    if not expected:
        pieces = list(decoding.blocks)
        if not pieces:
            return np.zeros((decoding.channels, 0), dtype=np.float32)
        return np.concatenate(pieces, axis=1)
    out = np.empty((decoding.channels, expected), dtype=np.float32)
    filled = 0
    overflow: list[np.ndarray] = []  # headers that understate the length
    for block in decoding.blocks:
        take = min(block.shape[1], expected - filled)
        out[:, filled : filled + take] = block[:, :take]
        filled += take
        if take < block.shape[1]:
            overflow.append(block[:, take:])
    if overflow:
        return np.concatenate([out, *overflow], axis=1)
    if filled < expected:  # headers that overstate it
        return out[:, :filled].copy()
    return out


def read_audio(
    path: PathLike,
    *,
    sample_rate: int | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode [start, start+duration) seconds as float32 (channels, frames), resampled to
    `sample_rate` when given. Returns (audio, rate)."""
    decoding = _decoding(path, sample_rate, start, duration)
    return _gather(decoding), decoding.rate


def iter_audio(
    path: PathLike,
    *,
    block_frames: int,
    sample_rate: int | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> Iterator[np.ndarray]:
    """The same audio as read_audio, as float32 (channels, block_frames) blocks (the last one
    may be shorter), decoding and resampling as it goes."""
    if block_frames <= 0:
        raise ValueError("block_frames must be positive")
    return _reblocked(_decoding(path, sample_rate, start, duration).blocks, block_frames)


def _reblocked(blocks: Iterator[np.ndarray], block_frames: int) -> Iterator[np.ndarray]:
    pending: list[np.ndarray] = []
    pending_frames = 0
    for block in blocks:
        pending.append(block)
        pending_frames += block.shape[1]
        if pending_frames < block_frames:
            continue
        joined = np.concatenate(pending, axis=1)
        cut = 0
        while joined.shape[1] - cut >= block_frames:
            yield np.ascontiguousarray(joined[:, cut : cut + block_frames])
            cut += block_frames
        rest = joined[:, cut:]
        pending = [rest] if rest.shape[1] else []
        pending_frames = rest.shape[1]
    if pending_frames:
        yield np.ascontiguousarray(np.concatenate(pending, axis=1))


# --------------------------------------------------------------------------------------------
# Probing: the facts the service stores, and getID3-style tags for `separation/get`
# --------------------------------------------------------------------------------------------

# Containers (ffmpeg names) → the dataformat getID3-style clients expect.
_DATAFORMATS = {
    "mp3": "mp3",
    "wav": "wav",
    "w64": "wav",
    "flac": "flac",
    "aac": "aac",
    "aiff": "aiff",
    "ogg": "ogg",
    "asf": "wma",
    "ape": "ape",
    "wv": "wavpack",
    "matroska,webm": "matroska",
    "caf": "caf",
}
# In mp4/ogg the codec names the format better than the container does.
_MOV_DATAFORMATS = {"aac": "m4a", "alac": "alac", "mp3": "mp3", "flac": "flac", "opus": "opus"}
_OGG_DATAFORMATS = {"vorbis": "ogg", "opus": "opus", "flac": "flac", "speex": "speex"}

# Which getID3 tag family a container's metadata belongs to.
_TAG_FAMILIES = {
    "mp3": "id3v2",
    "aac": "id3v2",
    "aiff": "id3v2",
    "flac": "vorbiscomment",
    "ogg": "vorbiscomment",
    _MOV_FAMILY: "quicktime",
    "wav": "riff",
    "w64": "riff",
    "asf": "asf",
    "matroska,webm": "matroska",
    "ape": "ape",
    "wv": "ape",
}
# ffmpeg's generic metadata keys → the names getID3 uses for that family.
_TAG_KEY_NAMES = {
    "id3v2": {
        "track": "track_number",
        "date": "year",
        "album_artist": "band",
        "disc": "part_of_a_set",
        "tlen": "length",
        "copyright": "copyright_message",
        "encoder": "encoder_settings",
    },
    "vorbiscomment": {"track": "tracknumber", "album_artist": "albumartist", "disc": "discnumber"},
    "quicktime": {"track": "track_number", "date": "creation_date", "encoder": "encoding_tool"},
}
# Container bookkeeping that ffmpeg reports as metadata but is not a tag.
_TECHNICAL_KEYS = {
    "major_brand",
    "minor_version",
    "compatible_brands",
    "handler_name",
    "vendor_id",
    "language",
    "creation_time",
}

# MPEG audio layer III bitrates (kbit/s) by header index, MPEG-1 and MPEG-2/2.5.
_MP3_KBPS = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_HEADERS_TO_CHECK = 64


@dataclass
class _Mp3Header:
    kbps: int
    mode: int  # 0 stereo, 1 joint stereo, 2 dual channel, 3 mono


def _parse_mp3_header(data: bytes) -> _Mp3Header | None:
    if len(data) < 4 or data[0] != 0xFF or (data[1] & 0xE0) != 0xE0:
        return None
    version_bits = (data[1] >> 3) & 3
    layer_bits = (data[1] >> 1) & 3
    if layer_bits != 1:  # not layer III
        return None
    table = _MP3_KBPS[1 if version_bits == 3 else 2]
    index = data[2] >> 4
    if index >= len(table):
        return None
    return _Mp3Header(kbps=table[index], mode=data[3] >> 6)


def _flac_bits_per_sample(extradata: bytes | None) -> int | None:
    """Bits per sample from a FLAC STREAMINFO block (34 bytes; the field sits at bit 103)."""
    if not extradata or len(extradata) < 18:
        return None
    if extradata[:4] == b"fLaC":
        extradata = extradata[8:]  # whole-file style header: magic + block header
    if len(extradata) < 14:
        return None
    return (((extradata[12] & 1) << 4) | (extradata[13] >> 4)) + 1


def _bits_per_sample(codec_name: str, stream: Any) -> int | None:
    match = re.fullmatch(r"pcm_[suf](\d+)(?:[lb]e)?(?:_planar)?", codec_name)
    if match:
        return int(match.group(1))
    if codec_name == "flac":
        return _flac_bits_per_sample(stream.codec_context.extradata)
    if _is_lossless(codec_name):
        bits = {"s16": 16, "s16p": 16, "u8": 8, "u8p": 8}.get(stream.codec_context.format.name)
        return bits
    return None


@dataclass
class _FirstLook:
    """What probe() learns from the first packets: decodable or not, and MP3 frame headers."""

    frame_rate: int
    frame_channels: int
    mp3_headers: list[_Mp3Header]


def _first_look(source: _Source) -> _FirstLook:
    stream = source.stream
    mp3_headers: list[_Mp3Header] = []
    decoded: tuple[int, int] | None = None
    want_headers = source.codec_name == "mp3"
    packets = source.container.demux(stream)
    for _ in range(_PROBE_PACKET_LIMIT):
        try:
            packet = next(packets)
        except (StopIteration, av.FFmpegError):
            break
        if want_headers and packet.size and len(mp3_headers) < _MP3_HEADERS_TO_CHECK:
            header = _parse_mp3_header(bytes(packet)[:4])
            if header is not None:
                mp3_headers.append(header)
        if decoded is None:
            try:
                for frame in packet.decode():
                    if frame.samples > 0:
                        decoded = (frame.sample_rate, frame.layout.nb_channels)
                        break
            except av.FFmpegError:
                continue
        if decoded is not None and (not want_headers or len(mp3_headers) >= _MP3_HEADERS_TO_CHECK):
            break
    if decoded is None:
        raise AudioError("The file contains no decodable audio.")
    return _FirstLook(decoded[0], decoded[1], mp3_headers)


def _duration_seconds(source: _Source) -> float:
    frames = source.header_frames()
    if frames is not None:
        return frames / source.sample_rate
    if source.container.duration:
        return source.container.duration / av.time_base
    # No header says: count the samples (streams, bounded memory).
    source.reopen()
    frames = sum(frame.samples for frame in _decoded_frames(source))
    return frames / source.sample_rate


def _dataformat(format_name: str, codec_name: str) -> str:
    if format_name == _MOV_FAMILY:
        return _MOV_DATAFORMATS.get(codec_name, codec_name)
    if format_name == "ogg":
        return _OGG_DATAFORMATS.get(codec_name, codec_name)
    return _DATAFORMATS.get(format_name, format_name.split(",")[0])


def _metadata_tags(container: Any, stream: Any) -> dict[str, dict[str, list[str]]]:
    family = _TAG_FAMILIES.get(container.format.name, container.format.name.split(",")[0])
    merged: dict[str, str] = {}
    sources = [container.metadata]
    # Ogg and Matroska keep their tags on the stream; an MP3 stream's metadata is only the
    # LAME header's encoder name, which is not a tag.
    if container.format.name != "mp3":
        sources.append(stream.metadata)
    for metadata in sources:
        for key, value in metadata.items():
            key = key.lower()
            if key in _TECHNICAL_KEYS or key in merged:
                continue
            text = str(value).rstrip("\x00")
            if text:
                merged[key] = text
    if not merged:
        return {}
    names = _TAG_KEY_NAMES.get(family, {})
    return {family: {names.get(key, key): [value] for key, value in merged.items()}}


def _stream_summary(
    source: _Source,
    stream: Any,
    duration: float,
    mp3_headers: list[_Mp3Header],
    sample_rate: int,
    channels: int,
) -> dict[str, Any]:
    """The getID3 `audio` keys for one stream (without `streams`)."""
    codec_name = stream.codec_context.codec.canonical_name
    lossless = _is_lossless(codec_name)
    bits = _bits_per_sample(codec_name, stream)
    bitrate = _bitrate(source, stream, duration)

    channelmode = "mono" if channels == 1 else "stereo"
    bitrate_mode = "cbr" if codec_name.startswith("pcm_") else "vbr"
    encoder_options = ""
    if mp3_headers:
        if channels == 2 and mp3_headers[0].mode == 1:
            channelmode = "joint stereo"
        constant = len({h.kbps for h in mp3_headers}) == 1 and mp3_headers[0].kbps * 1000 == bitrate
        bitrate_mode = "cbr" if constant else "vbr"
        encoder_options = f"CBR{mp3_headers[0].kbps}" if constant else "VBR"

    summary: dict[str, Any] = {
        "dataformat": _dataformat(source.format_name, codec_name),
        "channels": int(channels),
        "sample_rate": int(sample_rate),
        "bitrate": int(bitrate),
        "channelmode": channelmode,
        "bitrate_mode": bitrate_mode,
        "lossless": bool(lossless),
        "encoder_options": encoder_options,
        "compression_ratio": float(bitrate / max(1, sample_rate * channels * (bits or 16))),
    }
    if bits is not None:
        summary["bits_per_sample"] = int(bits)
    encoder = stream.metadata.get("encoder") or source.container.metadata.get("encoder")
    if encoder:
        summary["encoder"] = str(encoder).rstrip("\x00")
    return summary


def _bitrate(source: _Source, stream: Any, duration: float) -> int:
    rate = stream.codec_context.bit_rate or 0
    if not rate and len(source.container.streams) == 1:
        rate = source.container.bit_rate or 0
    if not rate and duration > 0:
        rate = os.path.getsize(source.path) * 8 / duration
    return int(round(rate))


def probe(path: PathLike) -> AudioInfo:
    """Describe an audio file; raise AudioError when it cannot be decoded."""
    with _Source(path) as source:
        look = _first_look(source)
        # Rates and layouts from a decoded frame beat header guesses (HE-AAC, odd WAVs).
        sample_rate = look.frame_rate or source.sample_rate
        channels = look.frame_channels or source.channels
        duration = _duration_seconds(source)
        container = source.container
        primary = _stream_summary(source, source.stream, duration, look.mp3_headers, sample_rate, channels)
        streams = [primary]
        for other in list(container.streams.audio)[1:]:
            ctx = other.codec_context
            streams.append(_stream_summary(source, other, duration, [], int(ctx.sample_rate), int(ctx.channels)))
        tags: dict[str, Any] = {"audio": {**primary, "streams": [dict(s) for s in streams]}}
        metadata = _metadata_tags(container, source.stream)
        if metadata:
            tags["tags"] = metadata
        return AudioInfo(
            duration=float(duration),
            sample_rate=int(sample_rate),
            channels=int(channels),
            dataformat=primary["dataformat"],
            bitrate=primary["bitrate"],
            lossless=primary["lossless"],
            bits_per_sample=primary.get("bits_per_sample"),
            tags=tags,
        )


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------

_SOUNDFILE_FORMATS = {1: ("WAV", "PCM_16"), 2: ("FLAC", "PCM_16"), 4: ("WAV", "FLOAT"), 5: ("FLAC", "PCM_24")}

# MP3 at 320 kbps exists only for MPEG-1 rates; AAC takes the standard rates below.
_MP3_RATES = (32000, 44100, 48000)
_AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_AAC_BITRATE_PER_CHANNEL = 128_000  # 256 kbps for stereo
_MP3_LAYOUTS = {1: "mono", 2: "stereo"}
# Layouts without an LFE channel: the AAC encoder low-passes LFE, which would wreck a stem
# that merely happens to sit in the fourth channel. (PyAV cannot build 8-plane frames.)
_AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "6.0", 7: "7.0"}

# Blocks are handed to the codecs in pieces of at most this many frames, so a long array
# passed to write() does not turn into a second full-length copy.
_WRITE_PIECE_FRAMES = 1 << 16


def _encoder_rate(requested: int, supported: tuple[int, ...]) -> int:
    """The rate to encode at: the requested one when the codec takes it, else a common one."""
    if requested in supported:
        return requested
    return 48000 if requested % 8000 == 0 else 44100


class _SoundFileSink:
    """WAV/FLAC through libsndfile, quantised here so that values on the format's grid
    (k / 2**15, k / 2**23) come back bit for bit."""

    def __init__(self, path: str, container: str, subtype: str, sample_rate: int, channels: int):
        self._subtype = subtype
        self._file = soundfile.SoundFile(
            path, mode="w", samplerate=sample_rate, channels=channels, format=container, subtype=subtype
        )

    def write(self, block: np.ndarray) -> None:
        frames = block.T  # libsndfile wants (frames, channels)
        if self._subtype == "PCM_16":
            data = np.clip(np.rint(frames * 32768.0), -32768, 32767).astype(np.int16)
        elif self._subtype == "PCM_24":
            # libsndfile takes the top 24 bits of an int32.
            data = np.clip(np.rint(frames * 8388608.0), -8388608, 8388607).astype(np.int32) << 8
        else:
            data = np.ascontiguousarray(frames, dtype=np.float32)
        self._file.write(data)

    def close(self) -> None:
        self._file.close()


class _PyAVSink:
    """MP3 (libmp3lame, 320 kbps CBR) or M4A (AAC) through PyAV, fed frame by frame."""

    def __init__(self, path: str, fmt_id: int, sample_rate: int, channels: int):
        if fmt_id == 0:
            container_format, codec, rates, layouts = "mp3", "libmp3lame", _MP3_RATES, _MP3_LAYOUTS
            bit_rate = 320_000
        else:
            container_format, codec, rates, layouts = "ipod", "aac", _AAC_RATES, _AAC_LAYOUTS
            bit_rate = _AAC_BITRATE_PER_CHANNEL * channels
        if channels not in layouts:
            raise ValueError(f"{FORMATS[fmt_id].extension} output supports at most {max(layouts)} channels")
        self._rate = _encoder_rate(sample_rate, rates)
        self._layout = layouts[channels]
        self._resampler = (
            _StreamingResampler(sample_rate, self._rate, channels) if self._rate != sample_rate else None
        )
        self._container = av.open(path, mode="w", format=container_format)
        try:
            self._stream = self._container.add_stream(codec, rate=self._rate, layout=self._layout)
            self._stream.bit_rate = bit_rate
        except BaseException:
            self._container.close()
            raise
        self._samples_sent = 0

    def write(self, block: np.ndarray) -> None:
        if self._resampler is not None:
            block = self._resampler.push(block)
        self._encode(block)

    def _encode(self, block: np.ndarray) -> None:
        if not block.shape[1]:
            return
        planes = np.ascontiguousarray(block, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout=self._layout)
        frame.sample_rate = self._rate
        frame.time_base = Fraction(1, self._rate)
        frame.pts = self._samples_sent
        self._samples_sent += block.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        try:
            if self._resampler is not None:
                self._encode(self._resampler.finish())
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()


class AudioWriter:
    """Streaming encoder for one of MVSep's output formats; a context manager.

    write() takes float32 (channels, frames) blocks; values are clipped to [-1, 1] for the
    integer and lossy formats (32-bit float WAV keeps them).
    """

    def __init__(self, path: PathLike, fmt_id: int, sample_rate: int, channels: int):
        if fmt_id not in FORMATS:
            raise ValueError(f"unknown output format {fmt_id!r}")
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        if channels <= 0:
            raise ValueError("channels must be positive")
        self.path = os.fspath(path)
        self.format = FORMATS[fmt_id]
        self.sample_rate = sample_rate
        self.channels = channels
        self._clip = fmt_id != 4
        self._sink: _SoundFileSink | _PyAVSink
        if fmt_id in _SOUNDFILE_FORMATS:
            container, subtype = _SOUNDFILE_FORMATS[fmt_id]
            self._sink = _SoundFileSink(self.path, container, subtype, sample_rate, channels)
        else:
            self._sink = _PyAVSink(self.path, fmt_id, sample_rate, channels)
        self._closed = False

    def write(self, block: np.ndarray) -> None:
        if self._closed:
            raise ValueError("write to a closed AudioWriter")
        block = np.asarray(block)
        if block.ndim == 1 and self.channels == 1:
            block = block[np.newaxis, :]
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected a ({self.channels}, frames) array, got shape {block.shape}")
        for begin in range(0, block.shape[1], _WRITE_PIECE_FRAMES):
            piece = block[:, begin : begin + _WRITE_PIECE_FRAMES].astype(np.float32)  # a copy
            np.nan_to_num(piece, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
            if self._clip:
                np.clip(piece, -1.0, 1.0, out=piece)
            self._sink.write(piece)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sink.close()

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_audio(path: PathLike, data: np.ndarray, sample_rate: int, fmt_id: int) -> None:
    """Write float32 (channels, frames) audio in one of MVSep's output formats."""
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[np.newaxis, :]
    with AudioWriter(path, fmt_id, sample_rate, data.shape[0]) as writer:
        writer.write(data)
