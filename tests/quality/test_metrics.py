"""Quality metrics against hand-computed values, the libraries MSST uses, and museval.

The oracles (auraloss, librosa, torch-log-wmse, museval) are test-only dependencies; each
independent implementation below takes a different code path from openmvsep's (numpy FFT
frames, full C×C grids, time-domain sums) so that a shared mistake cannot hide.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from openmvsep.engine.mel import slaney_mel_filterbank
from openmvsep.quality import spectral
from openmvsep.quality.metrics import (
    ALL_METRICS,
    SECONDARY_METRICS,
    aura_mrstft,
    aura_stft,
    bleedless_fullness,
    framewise_sdr,
    l1_freq,
    log_wmse,
    median_framewise_sdr,
    sdr,
    sdr_from_sums,
    secondary_metrics,
    si_sdr,
)

SR = 44100


def _stems(samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mixture, vocals, estimate of vocals): a vibrato tone with harmonics over noisy backing."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SR
    phase = 2 * np.pi * 220 * t + 3 * np.sin(2 * np.pi * 5 * t)
    tone = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
    vocals = 0.25 * np.stack([tone, 0.8 * tone]) + 0.01 * rng.standard_normal((2, samples))
    backing = 0.15 * rng.standard_normal((2, samples)) + 0.2 * np.sin(2 * np.pi * 55 * t)
    estimate = 0.9 * vocals + 0.05 * backing + 0.002 * rng.standard_normal((2, samples))
    return vocals + backing, vocals, estimate


# --------------------------------------------------------------------------------------------
# Global SDR
# --------------------------------------------------------------------------------------------


def test_sdr_hand_computed() -> None:
    reference = np.ones((2, 1000))
    estimate = reference * 1.1  # error energy 2000 · 0.01 = 20
    assert sdr(reference, estimate) == pytest.approx(10 * math.log10((2000 + 1e-8) / (20 + 1e-8)), rel=1e-12)
    assert sdr(reference, estimate) == pytest.approx(20.0, abs=1e-8)  # eps moves it by 2e-9 dB
    assert sdr(reference, 0.5 * reference) == pytest.approx(10 * math.log10(4), abs=1e-9)  # 6.0206 dB
    assert sdr_from_sums(2000.0, 20.0) == pytest.approx(20.0, abs=1e-8)
    assert sdr_from_sums(1.0, 0.0, eps=1e-7) == pytest.approx(70.0, abs=1e-6)


def test_sdr_pools_channels_into_one_ratio() -> None:
    reference = np.array([[1.0, 1.0], [3.0, 3.0]])  # energy 20
    estimate = np.array([[1.0, 1.0], [3.0, 1.0]])  # error energy 4, all in one channel
    assert sdr(reference, estimate) == pytest.approx(10 * math.log10(20 / 4), abs=1e-8)


def test_sdr_silence_and_perfect_estimates() -> None:
    silence = np.zeros((2, 500))
    unit = np.zeros((2, 500))
    unit[0, 0] = 1.0  # energy 1
    assert sdr(silence, silence) == 0.0
    assert sdr(silence, unit) == pytest.approx(-80.0, abs=1e-6)
    assert sdr(unit, unit) == pytest.approx(80.0, abs=1e-6)
    assert math.isfinite(sdr(unit, unit))


def test_sdr_is_float64_whatever_the_input() -> None:
    rng = np.random.default_rng(3)
    reference = rng.standard_normal((2, 200_000)).astype(np.float32)
    estimate = (reference + 1e-3 * rng.standard_normal((2, 200_000))).astype(np.float32)
    value = sdr(reference, estimate)
    assert isinstance(value, float)
    ref64, est64 = reference.astype(np.float64), estimate.astype(np.float64)
    expected = 10 * np.log10((np.sum(ref64**2) + 1e-8) / (np.sum((ref64 - est64) ** 2) + 1e-8))
    assert value == pytest.approx(expected, abs=1e-10)


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError):
        sdr(np.zeros((2, 10)), np.zeros((2, 11)))
    with pytest.raises(ValueError):
        secondary_metrics(np.zeros((2, 5000)), np.zeros((2, 5000)), np.zeros((1, 5000)), SR)


def test_metric_names_in_mvsep_order() -> None:
    assert ALL_METRICS == ("sdr", "si_sdr", "l1_freq", "log_wmse", "aura_stft", "aura_mrstft", "bleedless", "fullness")


# --------------------------------------------------------------------------------------------
# museval framewise SDR
# --------------------------------------------------------------------------------------------


def _museval_sources() -> tuple[np.ndarray, np.ndarray]:
    """4 stereo sources of 5.3 s (not a whole number of frames) with silent and odd frames."""
    rng = np.random.default_rng(7)
    n = int(5.3 * SR)
    references = 0.1 * rng.standard_normal((4, 2, n))
    estimates = references + 0.03 * rng.standard_normal((4, 2, n)) * np.array([1, 2, 3, 4])[:, None, None]
    references[1, :, SR : 2 * SR] = 0.0  # a silent reference frame: NaN for every source
    estimates[0, :, 2 * SR + 10 : 3 * SR - 10] = references[0, :, 2 * SR + 10 : 3 * SR - 10]  # near perfect
    estimates[2, :, 3 * SR : 4 * SR] = 0.0  # a silent estimate frame
    references[3, 1, 4 * SR : 5 * SR] = -references[3, 0, 4 * SR : 5 * SR]  # channel sum 0 counts as silent
    return references, estimates


@pytest.fixture(scope="module")
def museval_v4_sdr():
    """museval.evaluate(...)[0] (v4, images). Importing museval needs the ffmpeg and ffprobe
    programs (through stempeg); without them, its standalone metrics module is loaded and called
    the way evaluate() calls it, after the same zero-padding or cutting of the estimates."""
    try:
        import museval

        return lambda refs, ests, win, hop: museval.evaluate(refs, ests, win=win, hop=hop)[0]
    except ImportError:
        pytest.skip("museval is not installed")
    except RuntimeError:  # stempeg: ffmpeg or ffprobe could not be found
        pass
    path = importlib.metadata.distribution("museval").locate_file("museval/metrics.py")
    spec = importlib.util.spec_from_file_location("museval_metrics_standalone", path)
    bss = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bss)

    def evaluate(refs: np.ndarray, ests: np.ndarray, win: int, hop: int) -> np.ndarray:
        n = refs.shape[1]
        ests = ests[:, :n] if ests.shape[1] >= n else np.pad(ests, [(0, 0), (0, n - ests.shape[1]), (0, 0)])
        return bss.bss_eval(
            refs,
            ests,
            compute_permutation=False,
            window=win,
            hop=hop,
            framewise_filters=False,
            bsseval_sources_version=False,
        )[0]

    return evaluate


@pytest.mark.parametrize(("estimate_length", "window", "hop"), [(-3000, 1.0, 1.0), (5000, 1.0, 0.5)])
def test_framewise_sdr_matches_museval(museval_v4_sdr, estimate_length: int, window: float, hop: float) -> None:
    references, estimates = _museval_sources()
    n = references.shape[-1]
    if estimate_length < 0:
        estimates = estimates[..., :estimate_length]  # museval pads the estimates with zeros
    else:
        estimates = np.concatenate([estimates, 0.1 * np.ones((4, 2, estimate_length))], axis=-1)  # cut
    # museval's layout is (sources, samples, channels).
    expected = museval_v4_sdr(
        references.transpose(0, 2, 1), estimates.transpose(0, 2, 1), int(window * SR), int(hop * SR)
    )
    ours = framewise_sdr(references, estimates, SR, window=window, hop=hop)
    assert ours.shape == expected.shape == (4, int((n - window * SR + hop * SR) // (hop * SR)))
    assert np.array_equal(np.isnan(ours), np.isnan(expected))
    assert np.isnan(ours).any() and not np.isnan(ours).all()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    if hop == window == 1.0:
        np.testing.assert_allclose(
            median_framewise_sdr(references, estimates, SR), np.nanmedian(expected, axis=1), rtol=0, atol=1e-6
        )


def test_framewise_sdr_hand_values() -> None:
    references = np.ones((1, 2, 3 * SR + 500))
    estimates = references.copy()
    estimates[..., SR : 2 * SR] = 0.5  # frame 1: SDR = 10·log10(1 / 0.25)
    frames = framewise_sdr(references, estimates, SR)
    assert frames.shape == (1, 3)  # the 500-sample tail is dropped
    assert frames[0, 0] == math.inf  # exact zero error
    assert frames[0, 1] == pytest.approx(10 * math.log10(4), abs=1e-12)
    # Shorter than a window: museval takes the whole track as one frame.
    short = framewise_sdr(references[..., :1000], 0.5 * references[..., :1000], SR)
    assert short.shape == (1, 1) and short[0, 0] == pytest.approx(10 * math.log10(4))
    assert np.isnan(median_framewise_sdr(np.zeros((1, 2, 2 * SR)), np.ones((1, 2, 2 * SR)), SR)).all()


# --------------------------------------------------------------------------------------------
# Secondary metrics: building blocks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "n_mels"),
    [
        (44100, 1024, 128),
        (44100, 2048, 128),
        (44100, 4096, 128),
        (44100, 4096, 512),
        (48000, 4096, 512),
        (22050, 2048, 64),
    ],
)
def test_mel_filterbank_equals_librosa(sample_rate: int, n_fft: int, n_mels: int) -> None:
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    np.testing.assert_array_equal(slaney_mel_filterbank(sample_rate, n_fft, n_mels), expected)


@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_a_weighting_equals_auraloss(sample_rate: int) -> None:
    auraloss = pytest.importorskip("auraloss")
    fir = auraloss.perceptual.FIRFilter(filter_type="aw", fs=sample_rate)
    np.testing.assert_array_equal(spectral.a_weighting_fir(sample_rate), fir.fir.weight.data.view(-1).numpy())


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_stft_chunks_equal_one_stft(monkeypatch: pytest.MonkeyPatch, pad_mode: str) -> None:
    monkeypatch.setattr(spectral, "_BINS_PER_BLOCK", 5000)  # force many small blocks
    signals = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 20_011)))
    window = torch.hann_window(1024, dtype=torch.float64)
    whole = torch.stft(signals, 1024, 256, window=window, center=True, pad_mode=pad_mode, return_complex=True)
    chunks = list(spectral.stft_chunks(signals, 1024, 256, window, pad_mode))
    assert len(chunks) > 3
    torch.testing.assert_close(torch.cat(chunks, dim=-1), whole, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("samples", "taps", "offset", "length"),
    [(50_000, 4000, 1999, 50_000), (50_000, 4000, 1999, 49_999), (30_001, 101, 50, 30_001), (7, 101, 50, 7)],
)
def test_fir_filter_is_linear_convolution(samples: int, taps: int, offset: int, length: int) -> None:
    rng = np.random.default_rng(2)
    x, h = rng.standard_normal((2, samples)), rng.standard_normal(taps)
    full = np.stack([np.convolve(row, h) for row in x])
    ours = spectral.fir_filter(torch.from_numpy(x), torch.from_numpy(h), offset, length).numpy()
    np.testing.assert_allclose(ours, full[:, offset : offset + length], rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------------------
# Secondary metrics against oracles
# --------------------------------------------------------------------------------------------

TRACK = _stems(int(2.6 * SR) + 77)


def _si_sdr_msst_literal(reference: np.ndarray, estimate: np.ndarray) -> float:
    eps = 1e-8
    scale = np.sum(estimate * reference + eps) / np.sum(reference**2 + eps)
    scaled = reference * scale
    return float(10 * np.log10(np.sum(scaled**2) / (np.sum((scaled - estimate) ** 2) + eps) + eps))


def _frames(x: np.ndarray, n_fft: int, hop: int, pad_mode: str) -> np.ndarray:
    padded = np.pad(x, [(0, 0), (n_fft // 2, n_fft // 2)], mode=pad_mode)
    starts = range(0, padded.shape[-1] - n_fft + 1, hop)
    return np.stack([padded[:, s : s + n_fft] for s in starts], axis=-1)  # (channels, n_fft, frames)


def _l1_freq_numpy(reference: np.ndarray, estimate: np.ndarray) -> float:
    ref = np.abs(np.fft.rfft(_frames(reference, 2048, 1024, "reflect"), axis=1))
    est = np.abs(np.fft.rfft(_frames(estimate, 2048, 1024, "reflect"), axis=1))
    return 100 / (1 + 10 * np.mean(np.abs(est - ref)))


def _bleedless_fullness_numpy(reference: np.ndarray, estimate: np.ndarray) -> tuple[float, float]:
    librosa = pytest.importorskip("librosa")
    mel = librosa.filters.mel(sr=SR, n_fft=4096, n_mels=512).astype(np.float64)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(4096) / 4096)  # periodic, like torch

    def mel_db(x: np.ndarray) -> np.ndarray:
        spectrum = np.abs(np.fft.rfft(_frames(x, 4096, 1024, "constant") * hann[None, :, None], axis=1))
        db = 20 * np.log10(np.maximum(np.einsum("mf,cft->cmt", mel, spectrum), 1e-10))
        return np.maximum(db, db.max() - 80)

    diff = mel_db(estimate) - mel_db(reference)
    positive, negative = diff[diff > 0], diff[diff < 0]
    return (
        100 / (1 + (positive.mean() if positive.size else 0.0)),
        100 / (1 - (negative.mean() if negative.size else 0.0)),
    )


def test_si_sdr_is_msst_variant() -> None:
    _, reference, estimate = TRACK
    assert si_sdr(reference, estimate) == pytest.approx(_si_sdr_msst_literal(reference, estimate), rel=1e-12)
    # One gain for both channels, unlike textbook per-channel SI-SDR.
    lopsided = estimate * np.array([[1.0], [0.5]])
    assert si_sdr(reference, lopsided) == pytest.approx(_si_sdr_msst_literal(reference, lopsided), rel=1e-12)
    silence = np.zeros((2, 4000))
    assert si_sdr(silence, silence) == pytest.approx(-80.0)


def test_l1_freq_matches_numpy_frames() -> None:
    _, reference, estimate = TRACK
    assert l1_freq(reference, estimate) == pytest.approx(_l1_freq_numpy(reference, estimate), rel=1e-10)
    assert l1_freq(reference, 0.5 * reference) == pytest.approx(_l1_freq_numpy(reference, 0.5 * reference), rel=1e-10)
    assert l1_freq(reference, reference) == 100.0


def test_aura_stft_matches_auraloss() -> None:
    auraloss = pytest.importorskip("auraloss")
    loss = auraloss.freq.STFTLoss(w_log_mag=1.0, w_lin_mag=0.0, w_sc=1.0)
    for reference, estimate in [TRACK[1:], (TRACK[1], 2 * TRACK[1]), (TRACK[2], TRACK[1])]:
        # MSST hands float64 arrays to auraloss; the reference goes first.
        expected = 100 / (1 + 10 * float(loss(torch.from_numpy(reference)[None], torch.from_numpy(estimate)[None])))
        assert aura_stft(reference, estimate) == pytest.approx(expected, rel=1e-10)
    # Hand value: est = 2·ref gives spectral convergence ‖2X − X‖/‖2X‖ = 1/2 plus log term ln 2.
    assert aura_stft(TRACK[1], 2 * TRACK[1]) == pytest.approx(100 / (1 + 10 * (0.5 + math.log(2))), rel=1e-6)
    assert aura_stft(TRACK[1], TRACK[1]) == 100.0


def test_aura_mrstft_matches_auraloss() -> None:
    auraloss = pytest.importorskip("auraloss")
    loss = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[1024, 2048, 4096],
        hop_sizes=[256, 512, 1024],
        win_lengths=[1024, 2048, 4096],
        scale="mel",
        n_bins=128,
        sample_rate=SR,
        perceptual_weighting=True,
    )
    _, reference, estimate = TRACK
    expected = 100 / (
        1 + 10 * float(loss(torch.from_numpy(reference)[None].float(), torch.from_numpy(estimate)[None].float()))
    )
    # float32 throughout, as MSST casts; our A-weighting runs by FFT rather than conv1d.
    assert aura_mrstft(reference, estimate, SR) == pytest.approx(expected, rel=1e-6)
    assert aura_mrstft(reference, reference, SR) == 100.0


def test_bleedless_fullness_match_numpy_float64() -> None:
    _, reference, estimate = TRACK
    # Ours runs in float32 like MSST; the float64 oracle differs by float32 rounding only.
    assert bleedless_fullness(reference, estimate, SR) == pytest.approx(
        _bleedless_fullness_numpy(reference, estimate), rel=1e-6
    )
    # Broadband bleed in the second half only: the untouched frames give exact zeros, which count
    # for neither mean. (Narrowband bleed would leave ulp-sized differences in most bins, whose
    # signs depend on the precision: MSST's definition is ill-conditioned there.)
    bled = reference.copy()
    half = reference.shape[1] // 2
    bled[:, half:] += 0.05 * np.random.default_rng(4).standard_normal((2, reference.shape[1] - half))
    expected = _bleedless_fullness_numpy(reference, bled)
    assert bleedless_fullness(reference, bled, SR) == pytest.approx(expected, rel=1e-6)
    # Half the amplitude is −6.02 dB in every mel bin: nothing bleeds, fullness = 100 / (1 + 6.02).
    bleedless, fullness = bleedless_fullness(reference, 0.5 * reference, SR)
    assert bleedless == 100.0
    assert fullness == pytest.approx(100 / (1 + 20 * math.log10(2)), rel=1e-5)
    assert bleedless_fullness(reference, reference, SR) == (100.0, 100.0)
    silence = np.zeros((2, 10_000))
    assert bleedless_fullness(silence, silence, SR) == (100.0, 100.0)


# --------------------------------------------------------------------------------------------
# log_wmse
# --------------------------------------------------------------------------------------------

# 88 219 samples is one of the lengths where torch-log-wmse keeps floor(n / 44100 · 44100) = n − 1.
QUIRK_LENGTH = 88_219


@pytest.fixture(scope="module")
def log_wmse_library():
    """torch-log-wmse 0.3.1's LogWMSE as MSST calls it.

    The package imports torchaudio only for resampling its FIR to other rates, never done at
    44.1 kHz; where torchaudio cannot be imported, a stand-in that fails if used takes its place.
    """
    try:
        import torchaudio.transforms  # noqa: F401

        stand_in = {}
    except Exception:  # absent, or a build for another torch (raises OSError)
        transforms = types.ModuleType("torchaudio.transforms")

        class Resample:
            def __init__(self, *args: object, **kwargs: object) -> None:
                raise AssertionError("torch-log-wmse tried to resample")

        transforms.Resample = Resample
        package = types.ModuleType("torchaudio")
        package.transforms = transforms
        stand_in = {"torchaudio": package, "torchaudio.transforms": transforms}
    saved = {name: sys.modules.get(name) for name in stand_in}
    sys.modules.update(stand_in)
    try:
        LogWMSE = pytest.importorskip("torch_log_wmse").LogWMSE
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    if importlib.metadata.version("torch-log-wmse") != "0.3.1":
        pytest.skip("torch-log-wmse 0.3.1 is the oracle")

    def score(mixture: np.ndarray, reference: np.ndarray, estimate: np.ndarray) -> float:
        metric = LogWMSE(
            audio_length=reference.shape[-1] / SR, sample_rate=SR, return_as_loss=False, bypass_filter=False
        )
        return float(
            metric(
                torch.from_numpy(mixture)[None],
                torch.from_numpy(reference)[None, None],
                torch.from_numpy(estimate)[None, None],
            )
        )

    return score


def _log_wmse_numpy(mixture: np.ndarray, reference: np.ndarray, estimate: np.ndarray) -> float:
    """The 0.3.1 arithmetic spelt out: one padded FFT convolution per cell of the C×C grid."""
    path = importlib.metadata.distribution("torch-log-wmse").locate_file("torch_log_wmse/filter_ir.pkl")
    taps = pickle.loads(path.read_bytes()).astype(np.float32).astype(np.float64)
    n = reference.shape[-1]
    kept = math.floor(n / SR * SR)
    size = 2 ** math.ceil(math.log2(kept + taps.size - 1))
    left = (size - taps.size) // 2
    response = np.fft.rfft(np.pad(taps, (left, size - taps.size - left)))
    shift = (size - taps.size % 2) // 2 - 1

    def hearing(x: np.ndarray) -> np.ndarray:
        y = np.fft.irfft(np.fft.rfft(x, n=size) * response, n=size)
        return np.roll(y, -shift)[:kept]

    channels = reference.shape[0]
    grid = np.empty((channels, channels))
    for i in range(channels):
        scale = 1 / (np.sqrt(np.mean(hearing(mixture[i]) ** 2)) + 1e-8)
        for j in range(channels):
            diff = hearing(reference[j] * scale) - hearing(estimate[j] * scale)
            diff[np.abs(diff) < 10 ** (-68 / 20)] = 0
            grid[i, j] = -4 * np.log(np.mean(diff**2) + 1e-8)
    return float(grid.mean())


@pytest.mark.filterwarnings("ignore:open_binary is deprecated:DeprecationWarning")  # inside the library
@pytest.mark.parametrize("samples", [QUIRK_LENGTH, 3 * SR + 123])
def test_log_wmse_matches_library_and_numpy(log_wmse_library, samples: int) -> None:
    mixture, reference, estimate = _stems(samples, seed=samples)
    assert (math.floor(samples / SR * SR) != samples) == (samples == QUIRK_LENGTH)
    ours = log_wmse(mixture, reference, estimate, SR)
    assert ours == pytest.approx(log_wmse_library(mixture, reference, estimate), rel=1e-8)
    assert ours == pytest.approx(_log_wmse_numpy(mixture, reference, estimate), rel=1e-8)


def test_log_wmse_identities() -> None:
    mixture, vocals, estimate = TRACK
    value = log_wmse(mixture, vocals, estimate, SR)
    # A 2-stem model's instrumental = mixture − vocals scores the same as its vocals.
    assert log_wmse(mixture, mixture - vocals, mixture - estimate, SR) == pytest.approx(value, rel=1e-9)
    assert log_wmse(mixture, estimate, vocals, SR) == pytest.approx(value, rel=1e-12)  # symmetric
    # Identical stems: every difference is gated to 0, so each cell is −4·ln(1e-8).
    assert log_wmse(mixture, vocals, vocals, SR) == pytest.approx(-4 * math.log(1e-8))
    assert log_wmse(np.zeros((2, 9000)), np.zeros((2, 9000)), np.zeros((2, 9000)), SR) == pytest.approx(
        -4 * math.log(1e-8)
    )


def test_log_wmse_needs_its_filter_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(spectral.importlib.metadata, "distribution", absent)
    spectral.log_wmse_impulse_response.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"pip install --no-deps torch-log-wmse==0\.3\.1"):
            log_wmse(*TRACK, SR)
    finally:
        spectral.log_wmse_impulse_response.cache_clear()


def test_log_wmse_rejects_other_rates() -> None:
    with pytest.raises(ValueError, match="44100"):
        log_wmse(*TRACK, 48000)


# --------------------------------------------------------------------------------------------
# All seven at once
# --------------------------------------------------------------------------------------------


def test_secondary_metrics_equal_the_single_metrics() -> None:
    mixture, reference, estimate = TRACK
    values = secondary_metrics(mixture, reference, estimate, SR)
    assert tuple(values) == SECONDARY_METRICS
    bleedless, fullness = bleedless_fullness(reference, estimate, SR)
    singles = {
        "si_sdr": si_sdr(reference, estimate),
        "l1_freq": l1_freq(reference, estimate),
        "log_wmse": log_wmse(mixture, reference, estimate, SR),
        "aura_stft": aura_stft(reference, estimate),
        "aura_mrstft": aura_mrstft(reference, estimate, SR),
        "bleedless": bleedless,
        "fullness": fullness,
    }
    assert values == pytest.approx(singles, rel=1e-12)
    assert all(isinstance(v, float) for v in values.values())
    # Direction: a worse estimate scores lower on every metric.
    worse = secondary_metrics(mixture, reference, 0.5 * estimate + 0.2 * (mixture - reference), SR)
    assert all(worse[name] < values[name] for name in SECONDARY_METRICS), (worse, values)
