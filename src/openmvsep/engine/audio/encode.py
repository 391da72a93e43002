"""Encoding: MVSep's six output formats, written block by block.

WAV and FLAC go through libsndfile, MP3 and M4A through PyAV's encoders; every writer takes
float32 (channels, frames) blocks, so a long output is never held whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av
import numpy as np
import soundfile

from openmvsep.engine.audio.resample import _StreamingResampler
from openmvsep.engine.audio.source import PathLike

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
        codec: Literal["libmp3lame", "aac"]  # a literal audio codec name: add_stream then returns an AudioStream
        rates: tuple[int, ...]
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
        self._resampler = _StreamingResampler(sample_rate, self._rate, channels) if self._rate != sample_rate else None
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
