"""Length: how much audio a file really holds, counted from its stream, never taken from its headers.

A header's length is a claim. A FLAC's STREAMINFO or an MP3's Xing frame count may say 5 s over
24 minutes of audio, and whatever trusts the claim (a length limit, a price, a chunk plan) is then
fooled while decoding gives all 24 minutes. So the length is counted, in one streaming pass that
stops as soon as a limit is passed: memory stays flat, and the time spent grows with the limit,
not with the file.

Where the demuxer takes each packet's length from the codec's own frame header (native FLAC,
MPEG audio) or from its size (PCM), summing the packets' lengths counts the audio without decoding it, several times
faster. Everywhere else (MP4's sample tables, Matroska's block times and the like are headers
too) each packet is decoded and its samples counted, one packet at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av

from openmvsep.engine.audio.source import AudioError, _decoded_frames, _Source

# How far a header's length may be from the counted one and still be the length reported: codec
# priming and padding (an MP3's LAME delay, an AAC edit list) make an honest header differ from a
# packet count by a few codec frames, and the header is the exact one there. A worker also never
# decodes more than this past the length a job was measured (and priced) at.
LENGTH_SLACK_SECONDS = 1.0

# (container, codec) pairs whose packet lengths come from the codec's frame headers, which the
# decoder reads the same way: a packet's length there is what decoding it gives.
_PACKET_LENGTH_STREAMS = {("flac", "flac"), ("mp3", "mp3")}
# Containers of PCM whose packet lengths are their byte counts over the frame size, as decoding's are.
_PCM_CONTAINERS = {"wav", "w64", "aiff", "caf"}


class TooLong(AudioError):
    """Audio that runs past a length limit. `counted` is how far the count got (just past the limit);
    `claimed` is what the headers say, when they say anything."""

    def __init__(self, counted: float, claimed: float | None):
        super().__init__(f"The audio runs longer than {counted:.1f} s.")
        self.counted = counted
        self.claimed = claimed


def header_seconds(source: _Source) -> float | None:
    """The length the headers claim, in seconds (None when they say nothing)."""
    frames = source.header_frames()
    if frames is None:
        return None
    return frames / source.sample_rate


def measured_seconds(source: _Source, limit: float | None = None) -> float:
    """The decoded length of the source's audio stream in seconds, counted from the file's start.

    Raises TooLong as soon as more than `limit` seconds are counted. When the headers' length lies
    within LENGTH_SLACK_SECONDS of the count, it is the one returned: it is exact where a count of
    packets includes the encoder's priming and padding that decoding drops (an MP3's, a few codec
    frames); otherwise the count is, a little long in that case, never short.
    """
    claimed = header_seconds(source)
    counted = _count(source.path, limit, claimed)
    if claimed is not None and abs(claimed - counted) <= LENGTH_SLACK_SECONDS:
        return claimed
    return counted


def _count(path: str, limit: float | None, claimed: float | None) -> float:
    # The file opened once more, read from its start: the caller's opening stays as it stands.
    with _Source(path) as source:
        return _count_from_start(source, limit, claimed)


def _count_from_start(source: _Source, limit: float | None, claimed: float | None) -> float:
    # An MP4 decode stops at the end its sample tables give (source.py); counting further measures
    # audio that no decode yields.
    end = None if source.total_frames is None else Fraction(source.total_frames, source.sample_rate)
    stops = [Fraction(bound) for bound in (limit, end) if bound is not None]
    stop = min(stops) if stops else None
    if _packets_tell_their_length(source):
        counted = _sum_packet_lengths(source, stop)
        if counted is None:  # a packet without a length: count what decoding gives instead
            source.reopen()
            counted = _sum_decoded_lengths(source, stop)
    else:
        counted = _sum_decoded_lengths(source, stop)
    if end is not None:
        counted = min(counted, end)
    if limit is not None and counted > limit:
        raise TooLong(float(counted), claimed)
    return float(counted)


def _packets_tell_their_length(source: _Source) -> bool:
    if source.format_name in _PCM_CONTAINERS and source.codec_name.startswith("pcm_"):
        return True
    return (source.format_name, source.codec_name) in _PACKET_LENGTH_STREAMS


def _sum_packet_lengths(source: _Source, stop: Fraction | None) -> Fraction | None:
    """Seconds of audio in the packets, read without decoding; None when a packet has no length."""
    time_base = source.time_base
    # Compared in whole ticks of the stream's time base: the loop runs once per packet.
    stop_ticks = None if stop is None else math.floor(stop / time_base)
    total = 0
    for packet in _packets(source):
        if not packet.duration or packet.duration < 0:
            return None
        total += packet.duration
        if stop_ticks is not None and total > stop_ticks:
            break
    return total * time_base


def _sum_decoded_lengths(source: _Source, stop: Fraction | None) -> Fraction:
    """Seconds of audio the decoder gives, one packet's frames at a time."""
    done = Fraction(0)  # seconds at rates the stream has left
    rate, samples, stop_samples = 0, 0, None
    for frame in _decoded_frames(source):
        frame_rate = frame.sample_rate or source.sample_rate
        if frame_rate != rate:  # counted in whole samples of the current rate: the loop runs once per frame
            done += Fraction(samples, rate) if rate else 0
            rate, samples = frame_rate, 0
            stop_samples = None if stop is None else math.floor((stop - done) * rate)
        samples += frame.samples
        if stop_samples is not None and samples > stop_samples:
            break
    return done + (Fraction(samples, rate) if rate else 0)


def _packets(source: _Source) -> Iterator[Any]:
    """The audio stream's packets in order; a read error ends the stream, as in decoding."""
    packets = source.container.demux(source.stream)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, av.FFmpegError):
            return
        if packet.size:  # the demuxer's empty flush packet carries no audio
            yield packet
