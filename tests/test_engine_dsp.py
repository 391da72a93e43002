"""Tests for the weight-free engine modules: phantom centre, Matchering wrapper, chunk joins.

All audio is synthesised here with fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from openmvsep.engine.joins import Chunk, join_chunks, plan_chunks
from openmvsep.engine.mastering import MasteringError, match_master
from openmvsep.engine.phantom_centre import extract_centre

SR = 44100


# --------------------------------------------------------------------------- helpers


def band_energy(signal: np.ndarray, low_hz: float, high_hz: float) -> float:
    """Energy of a 1-D signal between two frequencies (whole-signal FFT)."""
    spectrum = np.fft.rfft(signal.astype(np.float64))
    freqs = np.fft.rfftfreq(signal.shape[-1], 1.0 / SR)
    band = (freqs >= low_hz) & (freqs < high_hz)
    return float(np.sum(np.abs(spectrum[band]) ** 2))


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    error = estimate.astype(np.float64) - reference
    return 10.0 * np.log10(np.sum(reference**2) / np.sum(error**2))


# --------------------------------------------------------------------------- phantom centre


def synth_panned_mix(seconds: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mix, centre source, hard-left source, hard-right source), all (2, frames) float32."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * SR)) / SR
    # Voice-like: 200 Hz harmonics with a slow syllable-rate amplitude envelope.
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t) ** 2
    voice = sum(np.sin(2 * np.pi * 200.0 * k * t + k) / k for k in range(1, 6)) * syllables * 0.3
    left_tone = 0.25 * np.sin(2 * np.pi * 3000.0 * t)
    right_noise = scipy.signal.sosfilt(
        scipy.signal.butter(6, [6000, 8000], "bandpass", fs=SR, output="sos"), rng.standard_normal(t.size)
    )
    right_noise *= 0.1 / np.sqrt(np.mean(right_noise**2))

    zeros = np.zeros_like(t)
    centre = np.stack([voice, voice]).astype(np.float32)
    left = np.stack([left_tone, zeros]).astype(np.float32)
    right = np.stack([zeros, right_noise]).astype(np.float32)
    return centre + left + right, centre, left, right


def test_centre_and_wide_sum_to_input() -> None:
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal((2, SR * 3)) * 0.3).astype(np.float32)
    audio[1] = 0.6 * audio[1] + 0.4 * audio[0]  # partly correlated channels
    stems = extract_centre(audio, SR)
    assert stems["center"].shape == audio.shape and stems["wide"].shape == audio.shape
    assert stems["center"].dtype == np.float32 and stems["wide"].dtype == np.float32
    assert np.max(np.abs(stems["center"] + stems["wide"] - audio)) < 1e-5


def test_centre_of_mono_is_the_input() -> None:
    audio = np.sin(np.linspace(0, 300, 20000, dtype=np.float32))[np.newaxis, :]
    stems = extract_centre(audio, SR)
    np.testing.assert_array_equal(stems["center"], audio)
    np.testing.assert_array_equal(stems["wide"], np.zeros_like(audio))


def test_centre_panned_source_goes_to_centre_and_hard_panned_to_wide() -> None:
    mix, centre, left, right = synth_panned_mix()
    stems = extract_centre(mix, SR)

    for channel in (0, 1):
        assert snr_db(centre[channel], stems["center"][channel]) >= 10.0

    left_band = (2900.0, 3100.0)
    right_band = (5800.0, 8200.0)
    left_energy = band_energy(left[0], *left_band)
    right_energy = band_energy(right[1], *right_band)
    # The side sources end up (almost) entirely in the wide output ...
    assert band_energy(stems["wide"][0], *left_band) > 0.9 * left_energy
    assert band_energy(stems["wide"][1], *right_band) > 0.9 * right_energy
    # ... and hardly at all in the centre output.
    for channel in (0, 1):
        assert band_energy(stems["center"][channel], *left_band) < 0.05 * left_energy
        assert band_energy(stems["center"][channel], *right_band) < 0.05 * right_energy


def test_centre_of_silence_is_silence() -> None:
    audio = np.zeros((2, SR), dtype=np.float32)
    stems = extract_centre(audio, SR)
    np.testing.assert_array_equal(stems["center"], audio)
    np.testing.assert_array_equal(stems["wide"], audio)


@pytest.mark.parametrize("frames", [1, 700, 4095])
def test_centre_of_input_shorter_than_one_window(frames: int) -> None:
    rng = np.random.default_rng(frames)
    common = rng.standard_normal(frames).astype(np.float32)
    identical = np.stack([common, common])
    stems = extract_centre(identical, SR)
    assert stems["center"].shape == identical.shape
    # Identical channels are all centre, even when the input is shorter than the STFT window.
    assert np.max(np.abs(stems["center"] - identical)) < 1e-5

    independent = rng.standard_normal((2, frames)).astype(np.float32)
    stems = extract_centre(independent, SR)
    assert np.max(np.abs(stems["center"] + stems["wide"] - independent)) < 1e-5


def test_extra_channels_go_to_wide() -> None:
    mix, _, _, _ = synth_panned_mix(seconds=1.0)
    extra = np.random.default_rng(3).standard_normal((2, mix.shape[1])).astype(np.float32)
    audio = np.concatenate([mix, extra])
    stems = extract_centre(audio, SR)
    pair_only = extract_centre(mix, SR)
    np.testing.assert_array_equal(stems["center"][:2], pair_only["center"])
    np.testing.assert_array_equal(stems["center"][2:], 0.0)
    np.testing.assert_array_equal(stems["wide"][2:], extra)


# --------------------------------------------------------------------------- mastering


def synth_music(seconds: float, seed: int) -> np.ndarray:
    """Plucked harmonic notes with noise bursts on the beat, (2, frames) float64."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * SR)
    t = np.arange(frames) / SR
    music = np.zeros((2, frames))
    note_frames = SR // 2
    burst_frames = SR // 10
    for note in range(int(seconds * 2)):
        start = note * note_frames
        stop = min(frames, start + note_frames)
        pitch = rng.choice([110.0, 165.0, 220.0, 277.0, 330.0])
        decay = np.exp(-np.arange(stop - start) / SR * 4.0)
        tone = sum(np.sin(2 * np.pi * pitch * k * t[start:stop]) / k for k in range(1, 12)) * decay
        pan = rng.uniform(0.3, 0.7)
        music[0, start:stop] += pan * tone
        music[1, start:stop] += (1 - pan) * tone
        if note % 2 == 0:
            burst_stop = min(frames, start + burst_frames)
            burst_length = burst_stop - start
            burst = rng.standard_normal((2, burst_length)) * np.exp(-np.arange(burst_length) / SR * 40)
            music[:, start:burst_stop] += 0.5 * burst
    return music


def rms_db(audio: np.ndarray) -> float:
    return float(10.0 * np.log10(np.mean(audio.astype(np.float64) ** 2)))


def brightness_db(audio: np.ndarray) -> float:
    """High-band (4-12 kHz) over low-band (100 Hz-1 kHz) energy, in dB."""
    freqs, power = scipy.signal.welch(audio.mean(axis=0), SR, nperseg=4096)
    high = power[(freqs >= 4000) & (freqs < 12000)].sum()
    low = power[(freqs >= 100) & (freqs < 1000)].sum()
    return float(10.0 * np.log10(high / low))


@pytest.fixture(scope="module")
def quiet_dull_target() -> np.ndarray:
    music = synth_music(30.0, seed=1)
    music = scipy.signal.sosfilt(scipy.signal.butter(2, 2500, "low", fs=SR, output="sos"), music)
    music *= 10 ** (-40 / 20) / np.sqrt(np.mean(music**2))
    return music.astype(np.float32)


@pytest.fixture(scope="module")
def loud_bright_reference() -> np.ndarray:
    music = synth_music(30.0, seed=2)
    highs = scipy.signal.sosfilt(scipy.signal.butter(2, 2000, "high", fs=SR, output="sos"), music)
    music = music + 2.0 * highs
    music *= 10 ** (-12 / 20) / np.sqrt(np.mean(music**2))
    return (0.95 * np.tanh(music)).astype(np.float32)  # saturate: dense and loud, peaks below 0 dBFS


def test_mastering_matches_loudness_and_brightness(
    quiet_dull_target: np.ndarray, loud_bright_reference: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    stems, rate = match_master(quiet_dull_target, SR, loud_bright_reference, SR)
    result = stems["result"]
    assert rate == SR
    assert result.dtype == np.float32 and result.shape == quiet_dull_target.shape
    assert np.all(np.isfinite(result))

    assert abs(rms_db(result) - rms_db(loud_bright_reference)) < 1.5
    target_gap = abs(brightness_db(quiet_dull_target) - brightness_db(loud_bright_reference))
    result_gap = abs(brightness_db(result) - brightness_db(loud_bright_reference))
    assert result_gap < target_gap - 6.0
    # matchering's console chatter is routed to logging.
    assert capsys.readouterr().out == ""


def test_mastering_accepts_mono_at_another_rate(
    quiet_dull_target: np.ndarray, loud_bright_reference: np.ndarray
) -> None:
    mono_48k = scipy.signal.resample_poly(quiet_dull_target[0], 160, 147).astype(np.float32)[np.newaxis, :]
    stems, rate = match_master(mono_48k, 48000, loud_bright_reference, SR)
    assert rate == 44100
    assert stems["result"].shape[0] == 2
    assert abs(stems["result"].shape[1] - quiet_dull_target.shape[1]) <= 2
    np.testing.assert_allclose(stems["result"][0], stems["result"][1], atol=1e-6)


def test_mastering_rejects_a_too_short_reference(
    quiet_dull_target: np.ndarray, loud_bright_reference: np.ndarray
) -> None:
    with pytest.raises(MasteringError, match="too small in the REFERENCE"):
        match_master(quiet_dull_target, SR, loud_bright_reference[:, :2000], SR)


def test_mastering_rejects_surround_input(loud_bright_reference: np.ndarray) -> None:
    with pytest.raises(MasteringError):
        match_master(np.zeros((6, SR), dtype=np.float32), SR, loud_bright_reference, SR)


# --------------------------------------------------------------------------- joins


PLAN_CASES = [
    # total, chunk, overlap
    (100_000, 10_000, 1_000),
    (100_500, 10_000, 1_000),  # remainder 500 < 2*overlap: merged
    (102_500, 10_000, 1_000),  # remainder 2500: own chunk
    (10_001, 10_000, 1_000),  # just above one chunk
    (13_000, 10_000, 1_500),  # remainder exactly 2*overlap: own chunk
    (9_999, 10_000, 1_000),
    (50_000, 7_000, 0),
    (1, 4, 2),
]


@pytest.mark.parametrize(("total", "chunk_frames", "overlap"), PLAN_CASES)
def test_plan_covers_everything_without_tiny_tail(total: int, chunk_frames: int, overlap: int) -> None:
    chunks = plan_chunks(total, chunk_frames, overlap)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0
    assert chunks[-1].end == total
    for i, chunk in enumerate(chunks):
        assert chunk.start == max(0, i * chunk_frames - overlap)
        if i < len(chunks) - 1:
            assert chunk.end == (i + 1) * chunk_frames + overlap
    # The last chunk's own part (from its boundary) leaves room for its crossfade.
    if len(chunks) > 1:
        assert total - (len(chunks) - 1) * chunk_frames >= 2 * overlap
    expected_count = max(1, -(-total // chunk_frames))
    remainder = total - (expected_count - 1) * chunk_frames
    if expected_count > 1 and remainder < 2 * overlap:
        expected_count -= 1
    assert len(chunks) == expected_count


def test_plan_single_chunk() -> None:
    assert plan_chunks(5_000, 10_000, 1_000) == [Chunk(0, 0, 5_000)]
    assert plan_chunks(10_000, 10_000, 1_000) == [Chunk(0, 0, 10_000)]
    assert plan_chunks(10_500, 10_000, 1_000) == [Chunk(0, 0, 10_500)]


def test_plan_rejects_overlap_wider_than_half_a_chunk() -> None:
    with pytest.raises(ValueError):
        plan_chunks(100_000, 10_000, 5_001)


def identity_pieces(audio: np.ndarray, chunks: list[Chunk]):
    for chunk in chunks:
        yield chunk, audio[:, chunk.start : chunk.end]


@pytest.mark.parametrize(("total", "chunk_frames", "overlap"), PLAN_CASES)
def test_identity_join_reproduces_input_exactly(total: int, chunk_frames: int, overlap: int) -> None:
    audio = np.random.default_rng(total).standard_normal((2, total)).astype(np.float32)
    chunks = plan_chunks(total, chunk_frames, overlap)
    joined = np.concatenate(list(join_chunks(identity_pieces(audio, chunks), total, overlap)), axis=1)
    np.testing.assert_array_equal(joined, audio)


def test_stems_that_sum_to_input_still_sum_after_join() -> None:
    total, chunk_frames, overlap = 60_123, 8_000, 1_024
    rng = np.random.default_rng(5)
    audio = rng.standard_normal((2, total)).astype(np.float32)
    chunks = plan_chunks(total, chunk_frames, overlap)
    # Each chunk splits its input differently, like a model would.
    splits = [rng.uniform(0.0, 1.0, size=(2, 1)).astype(np.float32) for _ in chunks]
    vocals = [(c, audio[:, c.start : c.end] * g) for c, g in zip(chunks, splits)]
    rest = [(c, audio[:, c.start : c.end] - v) for (c, v) in vocals]

    joined_vocals = np.concatenate(list(join_chunks(vocals, total, overlap)), axis=1)
    joined_rest = np.concatenate(list(join_chunks(rest, total, overlap)), axis=1)
    assert joined_vocals.shape == audio.shape
    np.testing.assert_allclose(joined_vocals + joined_rest, audio, atol=1e-5)
    # And the join really did mix the chunks: the vocals are not just the input.
    assert not np.allclose(joined_vocals, audio * splits[0])


def test_join_has_no_clicks_at_boundaries() -> None:
    total, chunk_frames, overlap = 50_000, 7_001, 512
    frequency = 440.0
    sine = np.sin(2 * np.pi * frequency * np.arange(total) / SR).astype(np.float32)[np.newaxis, :]
    max_slope = 2 * np.pi * frequency / SR
    chunks = plan_chunks(total, chunk_frames, overlap)
    gains = [0.98 if chunk.index % 2 == 0 else 1.02 for chunk in chunks]
    pieces = [(c, sine[:, c.start : c.end] * g) for c, g in zip(chunks, gains)]

    joined = np.concatenate(list(join_chunks(pieces, total, overlap)), axis=1)
    allowed = 1.02 * max_slope * 1.01 + 1e-3
    assert np.max(np.abs(np.diff(joined[0]))) <= allowed

    # The check can fail: butting the chunks' own parts together clicks.
    hard_cut = np.concatenate([sine[0, i * chunk_frames : (i + 1) * chunk_frames] * g for i, g in enumerate(gains)])
    assert np.max(np.abs(np.diff(hard_cut))) > allowed


def test_join_streams_one_chunk_at_a_time() -> None:
    total, chunk_frames, overlap = 40_000, 10_000, 1_000
    audio = np.random.default_rng(9).standard_normal((1, total)).astype(np.float32)
    chunks = plan_chunks(total, chunk_frames, overlap)
    consumed: list[int] = []

    def pieces():
        for chunk in chunks:
            consumed.append(chunk.index)
            yield chunk, audio[:, chunk.start : chunk.end]

    blocks = join_chunks(pieces(), total, overlap)
    first = next(blocks)
    assert consumed == [0]
    assert first.shape == (1, chunk_frames - overlap)
    assert sum(block.shape[1] for block in blocks) + first.shape[1] == total


def test_join_rejects_out_of_order_or_missing_pieces() -> None:
    total, chunk_frames, overlap = 30_000, 10_000, 1_000
    audio = np.zeros((2, total), dtype=np.float32)
    chunks = plan_chunks(total, chunk_frames, overlap)
    pieces = list(identity_pieces(audio, chunks))
    with pytest.raises(ValueError):
        list(join_chunks([pieces[0], pieces[2], pieces[1]], total, overlap))
    with pytest.raises(ValueError):
        list(join_chunks(pieces[:2], total, overlap))
    with pytest.raises(ValueError):
        list(join_chunks([(chunks[0], audio[:, :5])], total, overlap))
