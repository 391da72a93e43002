"""Combining the same stem from several models (ENGINES.md §d), in the wave or the FFT domain.

wave: avg (weighted mean), median (per sample; weights ignored), min/max (per sample, the value with the
smallest/largest magnitude, sign kept, ties to the first model).
fft: the same per STFT bin of each channel (n_fft 2048, hop 1024, periodic Hann, centred with zero
padding); avg is the weighted complex mean, min/max pick by magnitude, median orders complex numbers by
real part then imaginary part as numpy does; then the inverse STFT at the original length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ALGORITHMS = ("avg_wave", "median_wave", "min_wave", "max_wave", "avg_fft", "median_fft", "min_fft", "max_fft")
N_FFT, HOP = 2048, 1024


def _pick_by_magnitude(stack: np.ndarray, largest: bool) -> np.ndarray:
    magnitude = np.abs(stack)
    index = magnitude.argmax(axis=0) if largest else magnitude.argmin(axis=0)  # argmax/argmin: first on ties
    return np.take_along_axis(stack, index[None], axis=0)[0]


def _combine(stack: np.ndarray, how: str, weights: np.ndarray) -> np.ndarray:
    if how == "avg":
        shape = (-1,) + (1,) * (stack.ndim - 1)
        return (stack * weights.reshape(shape)).sum(axis=0) / weights.sum()
    if how == "median":
        return np.median(stack, axis=0)
    return _pick_by_magnitude(stack, largest=how == "max")


def _stft(x: np.ndarray) -> np.ndarray:
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    spec = torch.stft(
        torch.from_numpy(x.astype(np.float64)),
        N_FFT,
        HOP,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return spec.numpy()


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    return torch.istft(torch.from_numpy(spec), N_FFT, HOP, window=window, center=True, length=length).numpy()


def ensemble(
    waves: Sequence[np.ndarray], algorithm: str = "avg_wave", weights: Sequence[float] | None = None
) -> np.ndarray:
    """Combine same-shaped (channels, samples) estimates of one stem; returns float32 of that shape."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown ensemble algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    if not waves:
        raise ValueError("nothing to ensemble")
    shapes = {np.shape(w) for w in waves}
    if len(shapes) != 1:
        raise ValueError(f"estimates differ in shape: {sorted(shapes)}")
    w = np.ones(len(waves)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(waves),) or w.sum() <= 0 or (w < 0).any():
        raise ValueError("weights must be one non-negative number per estimate, not all zero")
    how, domain = algorithm.split("_")
    stack = np.stack([np.asarray(x, dtype=np.float64) for x in waves])
    if domain == "wave":
        return _combine(stack, how, w).astype(np.float32)
    length = stack.shape[-1]
    specs = np.stack([_stft(x) for x in stack])  # (models, channels, bins, frames)
    return _istft(_combine(specs, how, w), length).astype(np.float32)
