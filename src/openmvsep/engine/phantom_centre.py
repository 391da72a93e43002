"""Phantom-centre extraction: split a stereo mix into what both channels share and the rest.

Pure DSP, no weights. Per time-frequency bin we measure how similar the left and
right channels are (a smoothed, normalised cross-spectrum) and keep that share of
the mid signal (L+R)/2 as the centre. The wide output is the exact remainder,
``audio - center``, so the two stems always add back up to the input.

The STFT is computed in blocks of frames, so memory stays a small constant on
top of the input and the output however long the input is.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

FFT_SIZE = 4096
HOP = FFT_SIZE // 4
# Frames averaged on each side of a frame when estimating the channel statistics;
# a single frame's cross-spectrum is too noisy to tell correlated from uncorrelated.
SMOOTHING_RADIUS = 2
# Frames transformed per block: bounds the working memory (~a few MB per block).
BLOCK_FRAMES = 256
# Left padding so every real sample lies under FFT_SIZE / HOP full frames; with a
# periodic Hann window used for analysis and synthesis the squared windows then
# sum to a constant, and an all-ones mask reconstructs the input exactly.
_PAD_LEFT = FFT_SIZE - HOP
_WINDOW = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(FFT_SIZE) / FFT_SIZE)).astype(np.float32)
_WINDOW_SQUARED_SUM = float(np.sum(_WINDOW.astype(np.float64) ** 2) / HOP)  # 1.5 for Hann at 75 %
_TINY = 1e-12


def extract_centre(audio: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """Return ``{"center": c, "wide": w}``, both shaped like ``audio`` (channels, frames), float32.

    Mono input is all centre. With more than two channels, channels 0 and 1 are
    treated as the stereo pair and every further channel goes to ``wide`` untouched.
    ``sample_rate`` is accepted for interface symmetry; the fixed 4096-point STFT
    works for the usual 44.1/48 kHz rates.
    """
    del sample_rate  # the analysis does not depend on it
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"audio must be shaped (channels, frames), got {audio.shape}")

    center = np.zeros_like(audio)
    if audio.shape[0] == 1:
        center[:] = audio
    elif audio.shape[0] >= 2 and audio.shape[1] > 0:
        mono_centre = _centre_of_pair(audio[0], audio[1])
        center[0] = mono_centre
        center[1] = mono_centre
    wide = audio - center
    return {"center": center, "wide": wide}


def _centre_of_pair(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The centre signal (identical in both channels) of one stereo pair."""
    length = left.shape[0]
    last_padded_sample = _PAD_LEFT + length - 1
    frame_count = last_padded_sample // HOP + 1
    padded_length = (frame_count - 1) * HOP + FFT_SIZE
    output = np.zeros(padded_length, dtype=np.float32)

    for first in range(0, frame_count, BLOCK_FRAMES):
        last = min(first + BLOCK_FRAMES, frame_count)
        # Transform a few extra frames either side so smoothing at block edges
        # sees the same neighbours as it would on a single whole-signal STFT.
        ctx_first = max(0, first - SMOOTHING_RADIUS)
        ctx_last = min(frame_count, last + SMOOTHING_RADIUS)
        spec_left = _analyse(left, ctx_first, ctx_last)
        spec_right = _analyse(right, ctx_first, ctx_last)

        mask = _similarity_mask(spec_left, spec_right)
        keep = slice(first - ctx_first, first - ctx_first + (last - first))
        mid = spec_left[keep]
        mid += spec_right[keep]
        mid *= 0.5 * mask[keep]
        del spec_left, spec_right, mask

        frames = scipy.fft.irfft(mid, n=FFT_SIZE, axis=-1).astype(np.float32, copy=False)
        frames *= _WINDOW
        _overlap_add(output, frames, first)

    output /= _WINDOW_SQUARED_SUM
    return output[_PAD_LEFT : _PAD_LEFT + length]


def _analyse(signal: np.ndarray, first_frame: int, last_frame: int) -> np.ndarray:
    """Windowed spectra (frames, bins) of frames [first_frame, last_frame) of the padded signal."""
    start = first_frame * HOP - _PAD_LEFT
    stop = (last_frame - 1) * HOP + FFT_SIZE - _PAD_LEFT
    segment = np.zeros(stop - start, dtype=np.float32)
    src_start, src_stop = max(start, 0), min(stop, signal.shape[0])
    if src_stop > src_start:
        segment[src_start - start : src_stop - start] = signal[src_start:src_stop]
    frames = np.lib.stride_tricks.sliding_window_view(segment, FFT_SIZE)[::HOP]
    return scipy.fft.rfft(frames * _WINDOW, axis=-1)


def _similarity_mask(spec_left: np.ndarray, spec_right: np.ndarray) -> np.ndarray:
    """Per-bin share of energy common to both channels, in [0, 1].

    2·Re(S_LR) / (S_LL + S_RR) is 1 for identical channels, 0 when one channel is
    silent or the two are uncorrelated, and negative for out-of-phase content
    (clipped to 0: anti-phase material is "wide", not centre).
    """
    cross = (spec_left * spec_right.conj()).real
    power = spec_left.real**2 + spec_left.imag**2
    power += spec_right.real**2 + spec_right.imag**2
    cross = _smooth_over_time(cross)
    power = _smooth_over_time(power)
    mask = 2.0 * cross / (power + _TINY)
    return np.clip(mask, 0.0, 1.0, out=mask).astype(np.float32, copy=False)


def _smooth_over_time(values: np.ndarray) -> np.ndarray:
    """Moving sum over 2*SMOOTHING_RADIUS+1 frames (axis 0); truncated at the edges.

    A sum rather than a mean is enough: the mask is a ratio of two smoothed sums.
    """
    cumulative = np.cumsum(values, axis=0, dtype=np.float64)
    cumulative = np.concatenate([np.zeros((1, values.shape[1])), cumulative], axis=0)
    count = values.shape[0]
    upper = np.minimum(np.arange(count) + SMOOTHING_RADIUS + 1, count)
    lower = np.maximum(np.arange(count) - SMOOTHING_RADIUS, 0)
    return (cumulative[upper] - cumulative[lower]).astype(np.float32)


def _overlap_add(output: np.ndarray, frames: np.ndarray, first_frame: int) -> None:
    """Add each synthesis frame into ``output`` at its hop position."""
    # Frames four hops apart never overlap, so add them in four vectorised passes.
    overlaps = FFT_SIZE // HOP
    for phase in range(overlaps):
        group = frames[phase::overlaps]
        if group.shape[0] == 0:
            continue
        start = (first_frame + phase) * HOP
        span = group.shape[0] * overlaps * HOP
        # Consecutive frames in the group sit exactly FFT_SIZE apart: lay them end to end.
        output[start : start + span] += group.reshape(-1)
