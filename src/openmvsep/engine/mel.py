"""The Slaney mel filterbank: `librosa.filters.mel` with its defaults (htk=False, norm="slaney", 0 Hz to
Nyquist), rounded to float32 in the same order as librosa, so its values and its zero pattern are librosa's.
Mel-Band RoFormer takes its band layout from the zero pattern; the Quality Checker's mel spectra use the values.
"""

from __future__ import annotations

import functools

import numpy as np

_MEL_LINEAR_HZ_PER_MEL = 200.0 / 3  # Slaney: linear below 1 kHz ...
_MEL_LOG_START_HZ = 1000.0
_MEL_LOG_START = _MEL_LOG_START_HZ / _MEL_LINEAR_HZ_PER_MEL
_MEL_LOG_STEP = np.log(6.4) / 27.0  # ... and logarithmic above it


def _hz_to_mel(hz: float) -> float:
    if hz >= _MEL_LOG_START_HZ:
        return _MEL_LOG_START + np.log(hz / _MEL_LOG_START_HZ) / _MEL_LOG_STEP
    return hz / _MEL_LINEAR_HZ_PER_MEL


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = mels * _MEL_LINEAR_HZ_PER_MEL
    log_part = mels >= _MEL_LOG_START
    hz[log_part] = _MEL_LOG_START_HZ * np.exp(_MEL_LOG_STEP * (mels[log_part] - _MEL_LOG_START))
    return hz


@functools.lru_cache(maxsize=16)
def slaney_mel_filterbank(sample_rate: float, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular mel filters, shape (n_mels, n_fft // 2 + 1), float32, area-normalised."""
    bin_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2))
    widths = np.diff(edges_hz)
    offsets = edges_hz[:, None] - bin_hz[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    # librosa stores the triangles in float32 first and scales afterwards; keep that rounding.
    triangles = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    area_norm = 2.0 / (edges_hz[2:] - edges_hz[:-2])
    filters = (triangles * area_norm[:, None]).astype(np.float32)
    filters.setflags(write=False)
    return filters
