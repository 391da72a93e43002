"""Probing: what a file is, in neutral facts: its length and rate for the service, and a
JSON-able description of its container and audio streams (`AudioInfo.media`) from which the
API builds the descriptions its clients expect.

The facts come from the same opened stream that decoding reads (source.py), the rate and channels
from a decoded frame and the length from counting the stream (length.py), so what probe() says is
what read_audio() gives.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import av

from openmvsep.engine.audio.length import measured_seconds
from openmvsep.engine.audio.source import _MOV_FAMILY, AudioError, PathLike, _is_lossless, _Source


@dataclass
class AudioInfo:
    duration: float  # seconds
    sample_rate: int
    channels: int
    dataformat: str  # "mp3", "wav", "flac", "m4a", "aac", "ogg", ...
    bitrate: int  # bits/s
    lossless: bool
    bits_per_sample: int | None
    # The container and its audio streams, in plain JSON types; see probe() for the keys.
    media: dict[str, Any] = field(default_factory=dict)


# How many packets probe() will look at to find the first decodable frame.
_PROBE_PACKET_LIMIT = 500

# Containers (ffmpeg names) → the file type as people name it, after its usual extension.
_FILE_TYPES = {
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
# In mp4/ogg the codec names the file type better than the container does.
_MOV_FILE_TYPES = {"aac": "m4a", "alac": "alac", "mp3": "mp3", "flac": "flac", "opus": "opus"}
_OGG_FILE_TYPES = {"vorbis": "ogg", "opus": "opus", "flac": "flac", "speex": "speex"}

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
# The channel modes of an MPEG audio frame header, by their 2-bit field.
_MP3_MODES = ("stereo", "joint stereo", "dual channel", "mono")


@dataclass
class _Mp3Header:
    kbps: int
    mode: int  # an index into _MP3_MODES


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


def _file_type(format_name: str, codec_name: str) -> str:
    if format_name == _MOV_FAMILY:
        return _MOV_FILE_TYPES.get(codec_name, codec_name)
    if format_name == "ogg":
        return _OGG_FILE_TYPES.get(codec_name, codec_name)
    return _FILE_TYPES.get(format_name, format_name.split(",")[0])


def _metadata(container: Any, stream: Any) -> dict[str, str]:
    """The file's descriptive tags (title, artist, track, ...) under ffmpeg's generic, lower-case keys."""
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
    return merged


def _mp3_frames(headers: list[_Mp3Header]) -> dict[str, Any] | None:
    """What the first frame headers of an MP3 say: the bitrates met (each once, in order) and the
    first frame's channel mode. One bitrate throughout, equal to the stream's, means CBR."""
    if not headers:
        return None
    kbps = list(dict.fromkeys(header.kbps for header in headers))
    return {"kbps": kbps, "mode": _MP3_MODES[headers[0].mode]}


def _stream_facts(
    source: _Source,
    stream: Any,
    duration: float,
    mp3_headers: list[_Mp3Header],
    sample_rate: int,
    channels: int,
) -> dict[str, Any]:
    """One audio stream in plain JSON types."""
    codec_name = stream.codec_context.codec.canonical_name
    encoder = stream.metadata.get("encoder") or source.container.metadata.get("encoder")
    return {
        "codec": codec_name,
        "file_type": _file_type(source.format_name, codec_name),
        "sample_rate": int(sample_rate),
        "channels": int(channels),
        "bitrate": int(_bitrate(source, stream, duration)),
        "lossless": bool(_is_lossless(codec_name)),
        "bits_per_sample": _bits_per_sample(codec_name, stream),
        "encoder": str(encoder).rstrip("\x00") if encoder else None,  # as the file names it
        "mp3_frames": _mp3_frames(mp3_headers),
    }


def _bitrate(source: _Source, stream: Any, duration: float) -> int:
    rate = stream.codec_context.bit_rate or 0
    if not rate and len(source.container.streams) == 1:
        rate = source.container.bit_rate or 0
    if not rate and duration > 0:
        rate = os.path.getsize(source.path) * 8 / duration
    return int(round(rate))


def probe(path: PathLike, *, max_seconds: float | None = None) -> AudioInfo:
    """Describe an audio file; raise AudioError when it cannot be decoded.

    `duration` is the length decoding gives, counted from the stream (length.py), not the one the
    headers claim. With `max_seconds`, the count stops once the audio runs past it and TooLong is
    raised, so a long (or lying) file costs no more than the limit's worth of reading.

    `media` holds:
      container   ffmpeg's name for the container ("mp3", "mov,mp4,m4a,3gp,3g2,mj2", ...)
      metadata    the descriptive tags, {ffmpeg's lower-case key: text}; container bookkeeping left out
      streams     every audio stream, the decoded one first: codec, file_type, sample_rate, channels,
                  bitrate (bits/s), lossless, bits_per_sample, encoder (null when unknown) and
                  mp3_frames (the first stream of an MP3 only, else null)
    """
    with _Source(path) as source:
        look = _first_look(source)
        # Rates and layouts from a decoded frame beat header guesses (HE-AAC, odd WAVs).
        sample_rate = look.frame_rate or source.sample_rate
        channels = look.frame_channels or source.channels
        duration = measured_seconds(source, max_seconds)
        container = source.container
        primary = _stream_facts(source, source.stream, duration, look.mp3_headers, sample_rate, channels)
        streams = [primary]
        for other in list(container.streams.audio)[1:]:
            ctx = other.codec_context
            streams.append(_stream_facts(source, other, duration, [], int(ctx.sample_rate), int(ctx.channels)))
        media = {
            "container": source.format_name,
            "metadata": _metadata(container, source.stream),
            "streams": streams,
        }
        return AudioInfo(
            duration=float(duration),
            sample_rate=int(sample_rate),
            channels=int(channels),
            dataformat=primary["file_type"],
            bitrate=primary["bitrate"],
            lossless=primary["lossless"],
            bits_per_sample=primary["bits_per_sample"],
            media=media,
        )
