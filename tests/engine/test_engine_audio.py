"""Audio I/O: the six MVSep output formats, probing, segment reads, resampling and streaming.

Every file here is made by the real encoders (libsndfile, LAME, ffmpeg's AAC) from audio the
tests synthesise, and read back by the real decoders.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from openmvsep.engine.audio import (
    FORMATS,
    AudioError,
    AudioWriter,
    decode,
    iter_audio,
    probe,
    read_audio,
    write_audio,
)
from openmvsep.presenters.media_tags import getid3_tags

RATE = 44100
LOSSLESS_STEP = {1: 2.0**-15, 2: 2.0**-15, 5: 2.0**-23}  # quantisation step of the integer formats


def music(seconds: float, rate: int = RATE, channels: int = 2) -> np.ndarray:
    """Harmonic tones with a slow tremolo, a different note per channel: (channels, frames)."""
    t = np.arange(round(seconds * rate)) / rate
    rows = []
    for ch in range(channels):
        f0 = 220.0 * 2 ** (ch / 4)
        tone = sum(0.25 / k * np.sin(2 * np.pi * k * f0 * t + ch) for k in (1, 2, 3, 5))
        rows.append(tone * (1 + 0.3 * np.sin(2 * np.pi * 2.5 * t)))
    return np.stack(rows).astype(np.float32)


def on_grid(x: np.ndarray, step: float) -> np.ndarray:
    """Values the integer format stores exactly."""
    return (np.round(x / step) * step).astype(np.float32)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    noise = reference - test.astype(np.float64)
    return float(10 * np.log10(np.sum(reference**2) / max(np.sum(noise**2), 1e-30)))


def out_path(tmp_path: Path, fmt_id: int, name: str = "out") -> Path:
    return tmp_path / f"{name}.{FORMATS[fmt_id].extension}"


# --- formats table -------------------------------------------------------------------------


def test_formats_table_matches_mvsep() -> None:
    expected = {
        0: ("mp3 (320 kbps)", "mp3", "audio/mpeg"),
        1: ("wav (uncompressed, 16 bit)", "wav", "audio/wav"),
        2: ("flac (lossless, 16 bit)", "flac", "audio/flac"),
        3: ("m4a (lossy)", "m4a", "audio/mp4"),
        4: ("wav (uncompressed, 32 bit)", "wav", "audio/wav"),
        5: ("flac (lossless, 24 bit)", "flac", "audio/flac"),
    }
    assert {i: (f.label, f.extension, f.content_type) for i, f in FORMATS.items()} == expected
    assert all(FORMATS[i].id == i for i in FORMATS)


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt_id", [1, 2, 4, 5])
def test_lossless_formats_round_trip_exactly(tmp_path: Path, fmt_id: int, channels: int) -> None:
    x = music(1.5, channels=channels)
    if fmt_id in LOSSLESS_STEP:
        x = on_grid(x, LOSSLESS_STEP[fmt_id])
    path = out_path(tmp_path, fmt_id)
    write_audio(path, x, RATE, fmt_id)

    y, rate = read_audio(path)
    assert rate == RATE
    assert y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x)

    info = probe(path)
    assert (info.sample_rate, info.channels, info.lossless) == (RATE, channels, True)
    assert info.duration == pytest.approx(1.5, abs=1e-9)
    assert info.dataformat == FORMATS[fmt_id].extension
    assert info.bits_per_sample == {1: 16, 2: 16, 4: 32, 5: 24}[fmt_id]


def test_integer_formats_round_off_to_their_precision(tmp_path: Path) -> None:
    x = music(0.5)  # not on any grid
    for fmt_id, step in LOSSLESS_STEP.items():
        path = out_path(tmp_path, fmt_id, f"grid{fmt_id}")
        write_audio(path, x, RATE, fmt_id)
        y, _ = read_audio(path)
        assert np.abs(y - x).max() <= step / 2 + 1e-9


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt_id, min_snr", [(0, 30.0), (3, 25.0)])
def test_lossy_formats_round_trip_closely(tmp_path: Path, fmt_id: int, min_snr: float, channels: int) -> None:
    x = music(3.0, channels=channels)
    path = out_path(tmp_path, fmt_id)
    write_audio(path, x, RATE, fmt_id)

    y, rate = read_audio(path)
    assert rate == RATE
    # Encoder delay and padding are removed on decode: same length, no shift.
    assert y.shape == x.shape
    assert snr_db(x, y) > min_snr
    for ch in range(channels):
        assert np.corrcoef(x[ch], y[ch])[0, 1] > 0.999

    info = probe(path)
    assert (info.sample_rate, info.channels, info.lossless, info.bits_per_sample) == (RATE, channels, False, None)
    assert info.dataformat == FORMATS[fmt_id].extension
    assert info.duration == pytest.approx(3.0, abs=1e-3)


def test_mp3_is_320_kbps_cbr(tmp_path: Path) -> None:
    path = out_path(tmp_path, 0)
    write_audio(path, music(4.0), RATE, 0)

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.codec.canonical_name == "mp3"
        assert stream.bit_rate == 320000
        # Every frame header says 320 kbps (bitrate index 14 of MPEG-1 layer III).
        headers = [bytes(p)[:4] for p in container.demux(stream) if p.size]
    assert headers and all(h[0] == 0xFF and h[1] >> 3 & 3 == 3 and h[2] >> 4 == 14 for h in headers)

    audio_tags = getid3_tags(probe(path).media)["audio"]
    summary = (audio_tags["bitrate"], audio_tags["bitrate_mode"], audio_tags["encoder_options"])
    assert summary == (320000, "cbr", "CBR320")


def test_m4a_is_aac_in_an_m4a_container(tmp_path: Path) -> None:
    path = out_path(tmp_path, 3)
    write_audio(path, music(2.0), RATE, 3)
    with av.open(str(path)) as container:
        assert container.metadata.get("major_brand", "").strip() == "M4A"
        stream = container.streams.audio[0]
        assert stream.codec_context.codec.canonical_name == "aac"
        assert 200_000 < stream.bit_rate <= 270_000


def test_streamed_writes_equal_one_shot_writes(tmp_path: Path) -> None:
    x = music(2.0)
    for fmt_id in FORMATS:
        whole = out_path(tmp_path, fmt_id, f"whole{fmt_id}")
        pieces = out_path(tmp_path, fmt_id, f"pieces{fmt_id}")
        write_audio(whole, x, RATE, fmt_id)
        with AudioWriter(pieces, fmt_id, RATE, 2) as writer:
            for begin in range(0, x.shape[1], 1000):  # deliberately not a codec frame size
                writer.write(x[:, begin : begin + 1000])
        np.testing.assert_array_equal(read_audio(pieces)[0], read_audio(whole)[0])


def test_integer_and_lossy_formats_clip_float_keeps_range(tmp_path: Path) -> None:
    x = np.full((1, 4410), 1.5, dtype=np.float32)
    x[0, ::2] = -1.5
    for fmt_id in (1, 2, 5):
        path = out_path(tmp_path, fmt_id, f"clip{fmt_id}")
        write_audio(path, x, RATE, fmt_id)
        assert np.abs(read_audio(path)[0]).max() <= 1.0
    # The largest 16-bit value is one step short of 1.0.
    y, _ = read_audio(out_path(tmp_path, 1, "clip1"))
    assert y.max() == np.float32(32767 / 32768) and y.min() == -1.0

    path = out_path(tmp_path, 4, "float")
    write_audio(path, x, RATE, 4)
    np.testing.assert_array_equal(read_audio(path)[0], x)

    # Lossy formats: a sine at four times full scale encodes exactly as its clipped self.
    loud = (4 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)[np.newaxis]
    for fmt_id in (0, 3):
        clipped_path = out_path(tmp_path, fmt_id, f"clipped{fmt_id}")
        loud_path = out_path(tmp_path, fmt_id, f"loud{fmt_id}")
        write_audio(clipped_path, np.clip(loud, -1, 1), RATE, fmt_id)
        write_audio(loud_path, loud, RATE, fmt_id)
        np.testing.assert_array_equal(read_audio(loud_path)[0], read_audio(clipped_path)[0])
        assert np.abs(read_audio(loud_path)[0]).max() < 2.5


def test_multichannel_outputs(tmp_path: Path) -> None:
    x = on_grid(music(1.0, channels=6), 2.0**-15)
    for fmt_id in (1, 2, 4, 5):
        path = out_path(tmp_path, fmt_id, f"six{fmt_id}")
        write_audio(path, x, RATE, fmt_id)
        np.testing.assert_array_equal(read_audio(path)[0], x)
        assert probe(path).channels == 6

    path = out_path(tmp_path, 3, "six")
    write_audio(path, x, RATE, 3)
    y, _ = read_audio(path)
    assert y.shape == x.shape
    assert all(np.corrcoef(x[ch], y[ch])[0, 1] > 0.99 for ch in range(6))  # no channel lost or swapped

    with pytest.raises(ValueError, match="mp3"):
        AudioWriter(out_path(tmp_path, 0, "six"), 0, RATE, 6)


def test_lossy_output_at_a_rate_the_encoder_lacks_is_resampled(tmp_path: Path) -> None:
    x = music(2.0, rate=22050)
    path = out_path(tmp_path, 0, "low")
    write_audio(path, x, 22050, 0)  # MP3 at 320 kbps exists only for 32/44.1/48 kHz
    assert probe(path).sample_rate == 44100
    y, rate = read_audio(path, sample_rate=22050)
    assert rate == 22050 and y.shape == x.shape
    assert snr_db(x[:, 500:-500], y[:, 500:-500]) > 30


def test_writer_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        AudioWriter(tmp_path / "x.ogg", 9, RATE, 2)
    with pytest.raises(ValueError):
        write_audio(tmp_path / "x.wav", np.zeros((2, 10), np.float32), 0, 1)
    with AudioWriter(tmp_path / "x.wav", 1, RATE, 2) as writer:
        with pytest.raises(ValueError):
            writer.write(np.zeros((3, 10), np.float32))
    with pytest.raises(ValueError):
        writer.write(np.zeros((2, 10), np.float32))  # closed


# --- probe ---------------------------------------------------------------------------------

AUDIO_KEY_TYPES = {
    "dataformat": str,
    "channels": int,
    "sample_rate": int,
    "bitrate": (int, float),
    "channelmode": str,
    "bitrate_mode": str,
    "lossless": bool,
    "encoder_options": str,
    "compression_ratio": float,
}


def check_audio_entry(entry: dict) -> None:
    for key, kind in AUDIO_KEY_TYPES.items():
        assert isinstance(entry[key], kind), key
        assert not isinstance(entry[key], bool) or kind is bool, key
    assert entry["channelmode"] in {"mono", "stereo", "joint stereo"}
    assert entry["bitrate_mode"] in {"cbr", "vbr"}
    if "bits_per_sample" in entry:
        assert type(entry["bits_per_sample"]) is int
    if "encoder" in entry:
        assert isinstance(entry["encoder"], str)


@pytest.mark.parametrize("fmt_id", sorted(FORMATS))
def test_probe_fields_and_types(tmp_path: Path, fmt_id: int) -> None:
    path = out_path(tmp_path, fmt_id)
    write_audio(path, music(2.0), RATE, fmt_id)
    info = probe(path)

    assert isinstance(info.duration, float) and isinstance(info.bitrate, int)
    assert info.bitrate > 0
    media = json.loads(json.dumps(info.media))  # plain JSON types only: it is stored as it is
    assert media == info.media
    tags = json.loads(json.dumps(getid3_tags(media)))
    assert tags == getid3_tags(media)
    entry = tags["audio"]
    check_audio_entry(entry)
    assert len(entry["streams"]) == 1
    stream = entry["streams"][0]
    check_audio_entry(stream)
    assert stream == {k: v for k, v in entry.items() if k != "streams"}
    assert (entry["channels"], entry["sample_rate"], entry["bitrate"]) == (2, RATE, info.bitrate)
    assert entry["lossless"] is info.lossless
    assert entry["compression_ratio"] == pytest.approx(info.bitrate / (RATE * 2 * (info.bits_per_sample or 16)))
    if fmt_id == 0:
        assert entry["channelmode"] == "joint stereo"  # LAME's default at 320 kbps
    if fmt_id in (1, 4):
        assert entry["bitrate"] == RATE * 2 * info.bits_per_sample and entry["bitrate_mode"] == "cbr"
    # Never an empty list where an object belongs.
    assert tags.get("tags", {"x": 1}) not in ([], {})


def test_probe_omits_tags_when_the_file_has_none(tmp_path: Path) -> None:
    path = tmp_path / "plain.wav"
    soundfile.write(path, music(0.5).T, RATE, subtype="PCM_16")
    tags = getid3_tags(probe(path).media)
    assert "tags" not in tags
    assert tags["audio"]["channelmode"] == "stereo"


@pytest.mark.parametrize(
    "container_format, codec, suffix, family, track_key",
    [
        ("mp3", "libmp3lame", "mp3", "id3v2", "track_number"),
        ("flac", "flac", "flac", "vorbiscomment", "tracknumber"),
        ("ipod", "aac", "m4a", "quicktime", "track_number"),
    ],
)
def test_probe_reports_metadata_written_with_pyav(
    tmp_path: Path, container_format: str, codec: str, suffix: str, family: str, track_key: str
) -> None:
    path = tmp_path / f"tagged.{suffix}"
    x = music(1.0)
    with av.open(str(path), "w", format=container_format) as container:
        container.metadata.update(
            {"title": "Luke's Theme", "artist": "Various Artists", "album": "Ünïcode Album", "track": "10"}
        )
        stream = container.add_stream(codec, rate=RATE, layout="stereo")
        # PyAV converts to the encoder's own sample format (s16 for FLAC).
        frame = av.AudioFrame.from_ndarray(x, format="fltp", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)

    tags = getid3_tags(probe(path).media)
    assert json.loads(json.dumps(tags)) == tags
    found = tags["tags"][family]
    assert found["title"] == ["Luke's Theme"]
    assert found["artist"] == ["Various Artists"]
    assert found["album"] == ["Ünïcode Album"]
    assert found[track_key] == ["10"]
    assert all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in found.values())
    assert not {"major_brand", "handler_name", "compatible_brands"} & set(found)


# --- bad input -----------------------------------------------------------------------------


def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for seed in range(3):
        files[f"random{seed}"] = tmp_path / f"random{seed}.mp3"
        noise = np.random.default_rng(seed).integers(0, 256, 65536, dtype=np.uint8)
        files[f"random{seed}"].write_bytes(noise.tobytes())
    files["empty"] = tmp_path / "empty.wav"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "notes.txt"
    files["text"].write_text("These are not the droids you are looking for.\n" * 50)
    files["text_as_mp3"] = tmp_path / "notes.mp3"
    files["text_as_mp3"].write_text("These are not the droids you are looking for.\n" * 50)
    good = tmp_path / "good.wav"
    soundfile.write(good, music(0.5).T, RATE, subtype="PCM_16")
    raw = good.read_bytes()
    files["truncated_header"] = tmp_path / "truncated.wav"
    files["truncated_header"].write_bytes(raw[:30])
    files["no_frames"] = tmp_path / "header_only.wav"
    files["no_frames"].write_bytes(raw[:44])
    flac = tmp_path / "good.flac"
    soundfile.write(flac, music(0.5).T, RATE, subtype="PCM_16")
    files["truncated_flac"] = tmp_path / "truncated.flac"
    files["truncated_flac"].write_bytes(flac.read_bytes()[:20])
    return files


def test_undecodable_inputs_raise_audio_error(tmp_path: Path) -> None:
    for name, path in bad_inputs(tmp_path).items():
        for action in (probe, read_audio, lambda p: list(iter_audio(p, block_frames=4096))):
            with pytest.raises(AudioError) as caught:
                action(path)
            message = str(caught.value)
            assert message and "\n" not in message and str(tmp_path) not in message, name


def test_missing_file_is_not_an_audio_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nope.wav")


# --- segments ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt_id", [1, 2, 4, 5])
def test_segments_are_exact_slices_of_the_full_decode(tmp_path: Path, fmt_id: int) -> None:
    path = out_path(tmp_path, fmt_id)
    write_audio(path, music(6.0), RATE, fmt_id)
    full, _ = read_audio(path)

    for start, duration in [(0.0, 0.5), (1.0, 2.0), (2.3456, 0.7891), (5.5, 10.0), (7.0, 1.0)]:
        segment, rate = read_audio(path, start=start, duration=duration)
        low, high = round(start * rate), min(round((start + duration) * rate), full.shape[1])
        np.testing.assert_array_equal(segment, full[:, low : max(low, high)])

    cuts = [0.0, 0.37, 1.0, 2.2231, 4.99999]
    pieces = [read_audio(path, start=a, duration=b - a)[0] for a, b in zip(cuts, cuts[1:])]
    pieces.append(read_audio(path, start=cuts[-1])[0])
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), full)


@pytest.mark.parametrize("fmt_id", [0, 3])
def test_lossy_segments_line_up_with_the_full_decode(tmp_path: Path, fmt_id: int) -> None:
    path = out_path(tmp_path, fmt_id)
    write_audio(path, music(6.0), RATE, fmt_id)
    full, _ = read_audio(path)
    for start in (0.0, 1.2345, 4.0):
        segment, _ = read_audio(path, start=start, duration=1.0)
        low = round(start * RATE)
        assert segment.shape == (2, RATE)
        # Decoders need history, but after the pre-roll the output is the full decode's.
        assert np.abs(segment - full[:, low : low + RATE]).max() < 1e-3


@pytest.mark.parametrize("container_format, codec, suffix", [("matroska", "flac", "mka"), ("ogg", "libopus", "opus")])
def test_containers_without_exact_seeking_still_give_exact_segments(
    tmp_path: Path, container_format: str, codec: str, suffix: str
) -> None:
    """Matroska rounds timestamps to milliseconds and Ogg/Opus seeks by bisection; segments
    there are cut from a decode counted from the start, so they still line up exactly."""
    path = tmp_path / f"other.{suffix}"
    x = music(3.0, rate=48000)
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=48000, layout="stereo")
        for begin in range(0, x.shape[1], 4800):
            piece = np.ascontiguousarray(x[:, begin : begin + 4800])
            frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="stereo")
            frame.sample_rate = 48000
            frame.pts = begin
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)

    full, rate = read_audio(path)
    assert rate == 48000 and full.flags.c_contiguous
    assert abs(full.shape[1] - x.shape[1]) < 1024
    cuts = [0.0, 0.5, 1.2345, 2.0]
    pieces = [read_audio(path, start=a, duration=b - a)[0] for a, b in zip(cuts, cuts[1:])]
    pieces.append(read_audio(path, start=cuts[-1])[0])
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), full)
    np.testing.assert_array_equal(np.concatenate(list(iter_audio(path, block_frames=7000)), axis=1), full)


def test_segment_reads_seek_instead_of_decoding_from_the_start(tmp_path: Path, monkeypatch) -> None:
    for fmt_id in (2, 0, 3):
        path = out_path(tmp_path, fmt_id)
        write_audio(path, music(30.0, channels=1), RATE, fmt_id)
        decoded = []
        original = decode._frame_to_array

        def counting(frame, channels, decoded=decoded, original=original):  # the real conversion, counted
            decoded.append(frame.samples)
            return original(frame, channels)

        monkeypatch.setattr(decode, "_frame_to_array", counting)
        segment, _ = read_audio(path, start=28.0, duration=0.5)
        monkeypatch.setattr(decode, "_frame_to_array", original)
        assert segment.shape == (1, RATE // 2)
        assert sum(decoded) < 2 * RATE, FORMATS[fmt_id].label


def test_segment_past_the_end_is_empty(tmp_path: Path) -> None:
    path = out_path(tmp_path, 2)
    write_audio(path, music(1.0), RATE, 2)
    y, rate = read_audio(path, start=5.0, duration=1.0)
    assert y.shape == (2, 0) and rate == RATE
    assert list(iter_audio(path, block_frames=100, start=5.0)) == []


# --- resampling ----------------------------------------------------------------------------


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


def test_resampling_48k_to_44k1_keeps_length_and_pitch(tmp_path: Path) -> None:
    t = np.arange(2 * 48000) / 48000
    x = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), 0.5 * np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)
    path = tmp_path / "in48k.wav"
    write_audio(path, x, 48000, 4)

    y, rate = read_audio(path, sample_rate=44100)
    assert rate == 44100 and y.shape == (2, 2 * 44100)
    assert dominant_frequency(y[0], 44100) == pytest.approx(1000, abs=1)
    assert dominant_frequency(y[1], 44100) == pytest.approx(3000, abs=1)
    # Away from the edges it is the same sine, sampled at the new rate.
    t44 = np.arange(y.shape[1]) / 44100
    expected = 0.5 * np.sin(2 * np.pi * 1000 * t44)
    assert snr_db(expected[1000:-1000], y[0, 1000:-1000]) > 60

    segment, _ = read_audio(path, sample_rate=44100, start=0.5, duration=1.0)
    assert segment.shape == (2, 44100)
    assert dominant_frequency(segment[1], 44100) == pytest.approx(3000, abs=1)


def test_resampled_segments_join_like_a_whole_file_resample(tmp_path: Path) -> None:
    """Chunked reads at the model's rate: exact lengths, and no seams where chunks meet."""
    x = (0.3 * np.random.default_rng(0).standard_normal((2, 5 * 48000))).astype(np.float32)
    path = tmp_path / "noise48k.wav"
    write_audio(path, x, 48000, 4)
    whole, _ = read_audio(path, sample_rate=44100)
    cuts = [0.0, 0.5, 1.2345, 3.0001]
    pieces = [read_audio(path, sample_rate=44100, start=a, duration=b - a)[0] for a, b in zip(cuts, cuts[1:])]
    assert [p.shape[1] for p in pieces] == [round(b * 44100) - round(a * 44100) for a, b in zip(cuts, cuts[1:])]
    pieces.append(read_audio(path, sample_rate=44100, start=cuts[-1])[0])
    joined = np.concatenate(pieces, axis=1)
    assert joined.shape == whole.shape
    assert np.abs(joined - whole).max() < 1e-5


# --- streaming reads -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt_id", [2, 0])
@pytest.mark.parametrize("sample_rate", [None, 48000])
def test_iter_audio_blocks_equal_read_audio(tmp_path: Path, fmt_id: int, sample_rate: int | None) -> None:
    path = out_path(tmp_path, fmt_id)
    write_audio(path, music(3.0), RATE, fmt_id)
    for start, duration in [(0.0, None), (0.61, 1.7)]:
        whole, _ = read_audio(path, sample_rate=sample_rate, start=start, duration=duration)
        blocks = list(iter_audio(path, block_frames=10000, sample_rate=sample_rate, start=start, duration=duration))
        assert all(b.shape == (2, 10000) for b in blocks[:-1])
        assert 0 < blocks[-1].shape[1] <= 10000
        assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in blocks)
        np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)


def test_iter_audio_rejects_bad_block_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        iter_audio(tmp_path / "whatever.wav", block_frames=0)


def run_python(code: str, timeout: float) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hour_long_track_streams_in_bounded_memory(tmp_path: Path) -> None:
    """60 minutes of stereo 44.1 kHz is 635 MB as float32; neither side may hold it."""
    path = tmp_path / "hour.flac"
    minutes = 60
    written = run_python(
        f"""
        import json, resource
        import numpy as np
        from openmvsep.engine.audio import AudioWriter
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rate, block = 44100, 44100 * 10
        t = np.arange(block) / rate
        with AudioWriter({str(path)!r}, 2, rate, 2) as writer:
            for i in range({minutes} * 6):
                phase = 2 * np.pi * 220 * (i * 10 + t)
                tone = (0.25 * np.sin(phase)).astype(np.float32)
                writer.write(np.stack([tone, 0.5 * tone]))
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
        print(json.dumps({{"growth_kb": growth}}))
        """,
        timeout=120,
    )
    assert written["growth_kb"] < 150 * 1024

    streamed = run_python(
        f"""
        import json, resource
        import numpy as np
        from openmvsep.engine.audio import iter_audio
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        frames, peak, longest = 0, 0.0, 0
        for block in iter_audio({str(path)!r}, block_frames=44100 * 4, sample_rate=48000):
            frames += block.shape[1]
            longest = max(longest, block.shape[1])
            peak = max(peak, float(np.abs(block).max()))
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
        print(json.dumps({{"growth_kb": growth, "frames": frames, "peak": peak, "longest": longest}}))
        """,
        timeout=120,
    )
    assert streamed["frames"] == minutes * 60 * 48000
    assert streamed["longest"] == 44100 * 4
    assert 0.24 < streamed["peak"] < 0.26
    assert streamed["growth_kb"] < 150 * 1024
