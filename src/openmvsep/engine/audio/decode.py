"""Decoding: [start, start+duration) of any input ffmpeg reads, as float32, optionally resampled.

Positions are counted in samples at the file's own rate, and a segment read seeks when the
container keeps exact timestamps, so a slice read on its own equals the same slice of a full
decode (and a resampled segment equals, to float rounding, the same slice of a resampled full
decode). Decoded frames and the soxr resampler work block by block, so memory does not grow
with the length of a track.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from openmvsep.engine.audio.resample import _StreamingResampler
from openmvsep.engine.audio.source import _MOV_FAMILY, AudioError, PathLike, _decoded_frames, _Source

# Containers whose seek lands on a packet carrying its exact timestamp (sample tables,
# STREAMINFO/seek tables, byte offsets of PCM). After a seek there we trust the first pts.
_EXACT_SEEK_CONTAINERS = {"wav", "w64", "aiff", "caf", "flac", _MOV_FAMILY}
# Raw elementary streams: a seek there is a byte-position guess (an MP3 TOC, a bitrate
# estimate), but packets read in order carry exact timestamps. There we skip packets
# without decoding them instead of seeking.
_SKIP_PACKETS_CONTAINERS = {"mp3", "aac"}


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
