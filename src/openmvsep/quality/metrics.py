"""The per-stem quality metrics that MVSep's Quality Checker shows (docs/QUALITY.md §1, §5).

* `sdr` is the leaderboard number: global SDR over channels and samples, float64, eps 1e-8.
* The seven secondary metrics are MSST `get_metrics()`'s definitions, re-done with numpy and
  torch only, including their quirks (argument order, per-element eps, dtypes, the odd length
  torch-log-wmse keeps). MSST hands the arrays as soundfile reads them (float64) to torch for
  l1_freq, log_wmse and aura_stft, and casts to float32 for aura_mrstft and bleedless/fullness;
  so do we.
* `framewise_sdr` is museval v4's SDR ("images" mode): in that mode it reduces to a framewise
  signal-to-error ratio, so a 3-minute stem takes about 0.1 s instead of minutes.

Audio is (channels, samples); `sample_rate` is the rate MSST's constants assume. MSST writes
44100 into every call whatever the file's rate, so pass MSST_SAMPLE_RATE to reproduce it on any
dataset (log_wmse accepts no other rate).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Collection, Iterator

import numpy as np
import torch
from numpy.typing import ArrayLike

from openmvsep.engine.mel import slaney_mel_filterbank
from openmvsep.quality.names import ALL_METRICS, SECONDARY_METRICS  # noqa: F401 - re-exported
from openmvsep.quality.spectral import (
    a_weighting_fir,
    fir_filter,
    log_wmse_impulse_response,
    stft_chunks,
)

EPS = 1e-8
MSST_SAMPLE_RATE = 44100  # the rate MSST's get_metrics() passes to every library it calls

_BLOCK = 1 << 18  # samples per block in the numpy loops: keeps long tracks' temporaries in cache

# torch-log-wmse 0.3.1 constants. The gate is -68 dB computed the way the library does it, in
# float32 torch arithmetic, so that the comparison uses the very same threshold.
_LOG_WMSE_RATE = MSST_SAMPLE_RATE
_LOG_WMSE_GATE = float(torch.pow(10, torch.tensor(-68.0) / 20))
_LOG_WMSE_SCALE = -4.0
_LOG_WMSE_EPS = 1e-8
_LOG_WMSE_RMS_EPS = 1e-8

# auraloss STFTLoss: magnitudes are sqrt(max(re² + im², eps)).
_AURA_MAG_EPS = 1e-8
_AURA_STFT = (1024, 256)  # STFTLoss defaults: fft size (= window) and hop
_AURA_MRSTFT = ((1024, 256), (2048, 512), (4096, 1024))
_AURA_MEL_BINS = 128

_L1_FREQ_STFT = (2048, 1024)
_BLEED_STFT = (4096, 1024)
_BLEED_MEL_BINS = 512
_BLEED_TOP_DB = 80.0
_BLEED_AMIN = 1e-10


# --------------------------------------------------------------------------------------------
# Leaderboard SDR
# --------------------------------------------------------------------------------------------


def sdr_from_sums(ref_energy: float, err_energy: float, eps: float = EPS) -> float:
    """10·log10((Σs² + eps) / (Σ(s − ŝ)² + eps)) from the two energies."""
    return 10.0 * math.log10((ref_energy + eps) / (err_energy + eps))


def sdr(reference: ArrayLike, estimate: ArrayLike, eps: float = EPS) -> float:
    """Global SDR with both channels pooled into one energy ratio (MDX21 / MSST)."""
    ref, est = _pair(reference, estimate)
    return sdr_from_sums(_sum_squares(ref), _sum_squares(ref, est), eps)


# --------------------------------------------------------------------------------------------
# Secondary metrics, one by one
# --------------------------------------------------------------------------------------------


def si_sdr(reference: ArrayLike, estimate: ArrayLike) -> float:
    """MSST's SI-SDR: one gain for all channels, eps added to every element of both sums."""
    return _si_sdr(*_pair(reference, estimate))


def l1_freq(reference: ArrayLike, estimate: ArrayLike) -> float:
    """100 / (1 + 10·mean|‖STFT(est)‖ − ‖STFT(ref)‖|), rectangular 2048/1024 STFT."""
    with torch.inference_mode():
        return _l1_freq(*_tensors(reference, estimate))


def log_wmse(mixture: ArrayLike, reference: ArrayLike, estimate: ArrayLike, sample_rate: int) -> float:
    """torch-log-wmse 0.3.1 as MSST calls it: channels become stems, ref and est are symmetric."""
    ref, est = _pair(reference, estimate)
    return _log_wmse(_same_shape(mixture, ref, "mixture"), ref, est, sample_rate)


def aura_stft(reference: ArrayLike, estimate: ArrayLike) -> float:
    """100 / (1 + 10·auraloss STFTLoss(reference, estimate)) with MSST's weights."""
    with torch.inference_mode():
        return _loss_score(_aura_stft_loss(*_tensors(reference, estimate)))


def aura_mrstft(reference: ArrayLike, estimate: ArrayLike, sample_rate: int) -> float:
    """100 / (1 + 10·auraloss MultiResolutionSTFTLoss) on A-weighted float32 signals, mel scale."""
    with torch.inference_mode():
        ref, est = _tensors(reference, estimate)
        return _loss_score(_aura_mrstft_loss(ref.float(), est.float(), sample_rate))


def bleedless_fullness(reference: ArrayLike, estimate: ArrayLike, sample_rate: int) -> tuple[float, float]:
    """MSST's bleed/fullness pair from 512-band mel spectra in dB (estimate minus reference)."""
    with torch.inference_mode():
        ref, est = _tensors(reference, estimate)
        return _bleedless_fullness(ref.float(), est.float(), sample_rate)


def unavailable_metrics() -> dict[str, str]:
    """Secondary metrics this installation cannot compute, with the reason (log_wmse needs a package file)."""
    try:
        log_wmse_impulse_response()
    except RuntimeError as e:
        return {"log_wmse": str(e)}
    return {}


def secondary_metrics(
    mixture: ArrayLike,
    reference: ArrayLike,
    estimate: ArrayLike,
    sample_rate: int,
    *,
    device: str = "cpu",
    skip: Collection[str] = (),
) -> dict[str, float]:
    """The seven secondary metrics (less `skip`), keyed and ordered as SECONDARY_METRICS.

    The float64 and float32 tensors of reference and estimate are made once and shared.
    """
    ref, est = _pair(reference, estimate)
    mix = _same_shape(mixture, ref, "mixture")
    with torch.inference_mode():
        ref64, est64 = torch.from_numpy(ref).to(device), torch.from_numpy(est).to(device)
        ref32, est32 = ref64.float(), est64.float()
        bleedless, fullness = _bleedless_fullness(ref32, est32, sample_rate)
        values: dict[str, float] = {
            "si_sdr": _si_sdr(ref, est),
            "l1_freq": _l1_freq(ref64, est64),
            **({} if "log_wmse" in skip else {"log_wmse": _log_wmse(mix, ref, est, sample_rate)}),
            "aura_stft": _loss_score(_aura_stft_loss(ref64, est64)),
            "aura_mrstft": _loss_score(_aura_mrstft_loss(ref32, est32, sample_rate)),
            "bleedless": bleedless,
            "fullness": fullness,
        }
    return {name: values[name] for name in SECONDARY_METRICS if name not in skip}


# --------------------------------------------------------------------------------------------
# Secondary metrics, shared implementations. Tensors are (channels, samples); the STFTs run in
# blocks of frames (spectral.stft_chunks), reference and estimate in step.
# --------------------------------------------------------------------------------------------


def _si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    n = ref.size
    # Σ(est·ref + eps) / Σ(ref² + eps): eps is added per element, hence n·eps.
    gain = (np.dot(est.ravel(), ref.ravel()) + n * EPS) / (_sum_squares(ref) + n * EPS)
    target_energy = gain**2 * _sum_squares(ref)
    return float(10.0 * np.log10(target_energy / (_sum_squares(ref, est, gain) + EPS) + EPS))


def _l1_freq(ref: torch.Tensor, est: torch.Tensor) -> float:
    n_fft, hop = _L1_FREQ_STFT
    # MSST passes no window, i.e. torch's rectangular default.
    window = torch.ones(n_fft, dtype=ref.dtype, device=ref.device)
    total, count = 0.0, 0
    for ref_spec, est_spec in _stft_pairs(ref, est, n_fft, hop, window, "reflect"):
        total += float((est_spec.abs() - ref_spec.abs()).abs().sum(dtype=torch.float64))
        count += ref_spec.numel()
    return 100.0 / (1.0 + 10.0 * total / count)


def _aura_stft_loss(ref: torch.Tensor, est: torch.Tensor) -> float:
    """auraloss STFTLoss(w_sc=1, w_log_mag=1, w_lin_mag=0) called as loss(reference, estimate):
    spectral convergence ‖est − ref‖ / ‖est‖ plus mean |log ref − log est| over all channels.

    MSST feeds float64 here, where block-wise float64 sums equal auraloss's to ~1e-15.
    """
    n_fft, hop = _AURA_STFT
    window = torch.hann_window(n_fft, dtype=torch.float32, device=ref.device).to(ref.dtype)
    diff_sq = est_sq = log_l1 = 0.0
    count = 0
    for ref_spec, est_spec in _stft_pairs(ref, est, n_fft, hop, window, "reflect"):
        ref_mag, est_mag = _aura_magnitude(ref_spec), _aura_magnitude(est_spec)
        diff_sq += float(((est_mag - ref_mag) ** 2).sum(dtype=torch.float64))
        est_sq += float((est_mag**2).sum(dtype=torch.float64))
        log_l1 += float((torch.log(ref_mag) - torch.log(est_mag)).abs().sum(dtype=torch.float64))
        count += ref_mag.numel()
    return math.sqrt(diff_sq) / math.sqrt(est_sq) + log_l1 / count


def _aura_mrstft_loss(ref32: torch.Tensor, est32: torch.Tensor, sample_rate: int) -> float:
    """auraloss MultiResolutionSTFTLoss(scale="mel", perceptual_weighting=True), float32.

    The mel spectra are small enough to keep whole, so the loss terms are reduced by the very
    torch calls auraloss makes: torch.norm of a float32 tensor is off by ~1e-4 relative on a
    minute of audio, and this reproduces that on the same device instead of the exact sum.
    """
    ref_weighted, est_weighted = _a_weight(ref32, sample_rate), _a_weight(est32, sample_rate)
    total = torch.zeros((), dtype=torch.float32, device=ref32.device)
    for n_fft, hop in _AURA_MRSTFT:
        window = torch.hann_window(n_fft, dtype=torch.float32, device=ref32.device)
        mel = _mel(sample_rate, n_fft, _AURA_MEL_BINS, ref32)
        ref_parts, est_parts = [], []
        for ref_spec, est_spec in _stft_pairs(ref_weighted, est_weighted, n_fft, hop, window, "reflect"):
            ref_parts.append(torch.matmul(mel, _aura_magnitude(ref_spec)))
            est_parts.append(torch.matmul(mel, _aura_magnitude(est_spec)))
        ref_mel, est_mel = torch.cat(ref_parts, dim=-1), torch.cat(est_parts, dim=-1)
        convergence = torch.norm(est_mel - ref_mel, p="fro") / torch.norm(est_mel, p="fro")
        total = total + convergence + torch.nn.functional.l1_loss(torch.log(ref_mel), torch.log(est_mel))
    return float(total / len(_AURA_MRSTFT))


def _a_weight(signals: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """auraloss's perceptual weighting: conv1d(padding=taps // 2) with the A-weighting FIR.

    conv1d correlates, so it is the convolution with the reversed taps, delayed by taps // 2.
    """
    taps = torch.from_numpy(a_weighting_fir(sample_rate)[::-1].copy()).to(signals.device)
    return fir_filter(signals, taps, offset=taps.shape[0] // 2, length=signals.shape[-1])


def _aura_magnitude(spec: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(torch.clamp(spec.real**2 + spec.imag**2, min=_AURA_MAG_EPS))


def _loss_score(loss: float) -> float:
    return 100.0 / (1.0 + 10.0 * loss)


def _bleedless_fullness(ref32: torch.Tensor, est32: torch.Tensor, sample_rate: int) -> tuple[float, float]:
    n_fft, hop = _BLEED_STFT
    window = torch.hann_window(n_fft, dtype=torch.float32, device=ref32.device)
    mel = _mel(sample_rate, n_fft, _BLEED_MEL_BINS, ref32)
    ref_mel, est_mel = [], []
    for ref_spec, est_spec in _stft_pairs(ref32, est32, n_fft, hop, window, "constant"):
        # torch.abs as MSST: sqrt(re² + im²) would be faster but moves fullness by ~1e-6.
        ref_mel.append(torch.matmul(mel, ref_spec.abs()))
        est_mel.append(torch.matmul(mel, est_spec.abs()))
    diff = _amplitude_to_db(torch.cat(est_mel, dim=-1)) - _amplitude_to_db(torch.cat(ref_mel, dim=-1))
    # Positive differences: energy the reference lacks (bleed); negative: missing energy. MSST
    # averages them with float32 torch.mean; so do we.
    bleed, loss = diff[diff > 0], diff[diff < 0]
    mean_bleed = float(bleed.mean()) if bleed.numel() else 0.0
    mean_loss = float(loss.mean()) if loss.numel() else 0.0
    return 100.0 / (1.0 + mean_bleed), 100.0 / (1.0 - mean_loss)


def _amplitude_to_db(magnitude: torch.Tensor) -> torch.Tensor:
    """torchaudio AmplitudeToDB(stype="magnitude", top_db=80): one floor for the whole tensor."""
    db = 20.0 * torch.log10(torch.clamp(magnitude, min=_BLEED_AMIN))
    return torch.clamp(db, min=float(db.max()) - _BLEED_TOP_DB)


def _stft_pairs(
    ref: torch.Tensor, est: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, pad_mode: str
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    ref_chunks = stft_chunks(ref, n_fft, hop, window, pad_mode)
    return zip(ref_chunks, stft_chunks(est, n_fft, hop, window, pad_mode), strict=True)


def _mel(sample_rate: int, n_fft: int, n_mels: int, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(slaney_mel_filterbank(sample_rate, n_fft, n_mels).copy()).to(like.device, like.dtype)


def _log_wmse(mix: np.ndarray, ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """torch-log-wmse 0.3.1, LogWMSE(audio_length=T/44100, sample_rate=44100) on a (1, C, T)
    mixture and (1, 1, C, T) stems: a C×C grid of (mixture channel i, stem channel j) cells.

    The library filters the scaled stems separately; the filter is linear, so we filter the
    stem difference once per channel and scale per cell (equal up to float rounding).
    """
    if sample_rate != _LOG_WMSE_RATE:
        # Another rate makes the library resample its FIR with torchaudio; MSST never does that.
        raise ValueError(f"log_wmse is defined at {_LOG_WMSE_RATE} Hz (MSST's constant), got {sample_rate}")
    taps = torch.from_numpy(log_wmse_impulse_response().astype(np.float64))
    n = ref.shape[-1]
    # The library keeps floor(audio_length · sample_rate) samples, with audio_length = n / 44100:
    # that product falls just below n for some lengths and one sample is dropped.
    kept = math.floor(n / _LOG_WMSE_RATE * _LOG_WMSE_RATE)
    # Its FFT convolution centres the FIR, then rolls by this much: a fixed delay, no wrap-around.
    delay = (taps.shape[0] - taps.shape[0] % 2) // 2 - 1

    def hearing_filter(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return fir_filter(torch.from_numpy(x), taps, delay, kept).numpy()

    mix_rms = np.sqrt(np.mean(hearing_filter(mix) ** 2, axis=-1))
    stem_error = hearing_filter(ref - est)
    error_power, error_size = stem_error**2, np.abs(stem_error)
    cells = []
    for scale in 1.0 / (mix_rms + _LOG_WMSE_RMS_EPS):
        # Cell (i, j) is the mean square of scale_i · error_j with |·| < gate zeroed.
        audible = error_size >= _LOG_WMSE_GATE / scale
        mse = scale**2 * np.sum(error_power, axis=-1, where=audible) / kept
        cells.append(np.log(mse + _LOG_WMSE_EPS) * _LOG_WMSE_SCALE)
    return float(np.mean(cells))


# --------------------------------------------------------------------------------------------
# museval v4 framewise SDR
# --------------------------------------------------------------------------------------------


def framewise_sdr(
    references: ArrayLike, estimates: ArrayLike, sample_rate: int, window: float = 1.0, hop: float = 1.0
) -> np.ndarray:
    """museval v4 SDR per frame, shape (sources, frames); inputs (sources, channels, samples).

    As museval: estimates are zero-padded or cut to the references' length; frames start every
    `hop` and the tail that does not fill a window is dropped (one frame if the track is not
    longer than a window); a frame is NaN for every source when any reference or estimate is
    silent in it (each sample's channel sum is 0). SDR is Σs² / Σ(ŝ − s)² in dB, +inf when the
    error is exactly zero. Unlike museval, a source silent for the whole track gives NaN frames
    instead of an error.
    """
    refs = np.asarray(references, dtype=np.float64)
    ests = np.asarray(estimates, dtype=np.float64)
    if refs.ndim != 3 or ests.shape[:2] != refs.shape[:2]:
        raise ValueError(f"expected (sources, channels, samples) twice, got {refs.shape} and {ests.shape}")
    length = refs.shape[-1]
    if ests.shape[-1] >= length:
        ests = ests[..., :length]
    else:
        ests = np.pad(ests, [(0, 0), (0, 0), (0, length - ests.shape[-1])])

    win = int(round(window * sample_rate))
    step = int(round(hop * sample_rate))
    if win < length:
        n_frames = (length - win + step) // step
    else:
        n_frames, win = 1, length

    n_sources = refs.shape[0]
    signal, error = np.empty((n_sources, n_frames)), np.empty((n_sources, n_frames))
    active = np.empty((n_sources, n_frames), dtype=bool)
    # Blocks of whole frames keep every temporary small (and in cache) on long tracks.
    frames_per_block = max(1, _BLOCK // step)
    for first in range(0, n_frames, frames_per_block):
        last = min(first + frames_per_block, n_frames)
        span = slice(first * step, (last - 1) * step + win)
        ref, est = refs[..., span], ests[..., span]
        diff = est - ref
        signal[:, first:last] = _frame_reduce(np.einsum("scn,scn->sn", ref, ref), win, step, np.sum)
        error[:, first:last] = _frame_reduce(np.einsum("scn,scn->sn", diff, diff), win, step, np.sum)
        active[:, first:last] = _frame_reduce(_channel_sum(ref) != 0, win, step, np.any) & _frame_reduce(
            _channel_sum(est) != 0, win, step, np.any
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        values = 10.0 * np.log10(signal / error)
    values[:, ~active.all(axis=0)] = np.nan
    return values


def _channel_sum(audio: np.ndarray) -> np.ndarray:
    """Σ over channels of (sources, channels, samples), added in channel order like museval's
    np.sum over its last axis (and several times faster than numpy's reduction over axis 1)."""
    total = audio[:, 0].copy()
    for channel in range(1, audio.shape[1]):
        total += audio[:, channel]
    return total


def _frame_reduce(per_sample: np.ndarray, win: int, step: int, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """Reduce each window of `win` samples, one every `step`, along the last axis."""
    return reduce(np.lib.stride_tricks.sliding_window_view(per_sample, win, axis=-1)[..., ::step, :], axis=-1)


def median_framewise_sdr(references: ArrayLike, estimates: ArrayLike, sample_rate: int) -> np.ndarray:
    """Per-source median over non-NaN frames (museval's track summary); NaN if none is left."""
    frames = framewise_sdr(references, estimates, sample_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are a legitimate NaN
        return np.nanmedian(frames, axis=1)


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _pair(reference: ArrayLike, estimate: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    ref = np.ascontiguousarray(reference, dtype=np.float64)  # soundfile's data.T is not
    if ref.ndim != 2:
        raise ValueError(f"expected audio shaped (channels, samples), got {ref.shape}")
    return ref, _same_shape(estimate, ref, "estimate")


def _same_shape(audio: ArrayLike, like: np.ndarray, name: str) -> np.ndarray:
    array = np.ascontiguousarray(audio, dtype=np.float64)
    if array.shape != like.shape:
        raise ValueError(f"{name} shape {array.shape} differs from the reference's {like.shape}")
    return array


def _tensors(reference: ArrayLike, estimate: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    ref, est = _pair(reference, estimate)
    return torch.from_numpy(ref), torch.from_numpy(est)


def _sum_squares(a: np.ndarray, b: np.ndarray | None = None, gain: float = 1.0) -> float:
    """Σa² or Σ(gain·a − b)² in float64, block by block instead of through track-sized temporaries."""
    flat_a = a.ravel()
    if b is None:
        return float(np.dot(flat_a, flat_a))
    flat_b = b.ravel()
    total = 0.0
    for first in range(0, flat_a.size, _BLOCK):
        diff = gain * flat_a[first : first + _BLOCK] - flat_b[first : first + _BLOCK]
        total += float(np.dot(diff, diff))
    return total
