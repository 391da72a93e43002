"""Filters and framing that the secondary quality metrics are built from.

Each piece re-creates what a library used by MSST's `get_metrics()` computes, so the metrics
need none of those libraries at run time:

* `a_weighting_fir` is the 101-tap A-weighting FIR of auraloss's `perceptual_weighting`;
* `log_wmse_impulse_response` reads the hearing-sensitivity FIR that torch-log-wmse 0.3.1
  ships as package data, without importing that package (it imports torchaudio);
* `stft_chunks` is `torch.stft(center=True)` cut into blocks of frames, so a long track never
  holds its whole spectrogram in memory;
* `fir_filter` is linear convolution by overlap-save FFT blocks (torch's conv1d takes ~10 s
  for a 101-tap filter over a 3-minute stereo pair; this takes a fraction of a second).
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F

LOG_WMSE_VERSION = "0.3.1"
_LOG_WMSE_IR_FILE = "torch_log_wmse/filter_ir.pkl"


# --------------------------------------------------------------------------------------------
# A-weighting FIR (auraloss FIRFilter(filter_type="aw"))
# --------------------------------------------------------------------------------------------

# Poles of the analogue A-weighting curve (IEC 61672) and its gain at 1 kHz in dB.
_A_WEIGHTING_POLES_HZ = (20.598997, 107.65265, 737.86223, 12194.217)
_A_WEIGHTING_1KHZ_DB = 1.9997


@functools.lru_cache(maxsize=8)
def a_weighting_fir(sample_rate: float, taps: int = 101) -> np.ndarray:
    """Least-squares linear-phase FIR fitted to the bilinear-transformed analogue A-weighting."""
    f1, f2, f3, f4 = _A_WEIGHTING_POLES_HZ
    w1, w2, w3, w4 = (2 * np.pi * f for f in (f1, f2, f3, f4))
    numerator = [w4**2 * 10 ** (_A_WEIGHTING_1KHZ_DB / 20), 0, 0, 0, 0]
    denominator = np.polymul([1, 2 * w4, w4**2], [1, 2 * w1, w1**2])
    denominator = np.polymul(np.polymul(denominator, [1, w3]), [1, w2])
    b, a = scipy.signal.bilinear(numerator, denominator, fs=sample_rate)
    freqs, response = scipy.signal.freqz(b, a, worN=512, fs=sample_rate)
    fir = scipy.signal.firls(taps, freqs, np.abs(response), fs=sample_rate).astype(np.float32)
    fir.setflags(write=False)
    return fir


# --------------------------------------------------------------------------------------------
# torch-log-wmse 0.3.1 hearing-sensitivity FIR
# --------------------------------------------------------------------------------------------


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles a plain numpy array and refuses everything else (pickle can run code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in {_LOG_WMSE_IR_FILE}")
        return super().find_class(module, name)


@functools.lru_cache(maxsize=1)
def log_wmse_impulse_response() -> np.ndarray:
    """The FIR taps as torch-log-wmse 0.3.1 uses them: its float64 pickle cast to float32."""
    missing = RuntimeError(
        f"log_wmse needs the filter shipped with torch-log-wmse {LOG_WMSE_VERSION}: "
        f"pip install --no-deps torch-log-wmse=={LOG_WMSE_VERSION}"
    )
    try:
        dist = importlib.metadata.distribution("torch-log-wmse")
    except importlib.metadata.PackageNotFoundError:
        raise missing from None
    # 1.x ships other taps in another file and changed the arithmetic, so only 0.3.1 will do.
    if dist.version != LOG_WMSE_VERSION:
        raise missing
    # An installed (path) distribution locates its files as pathlib.Path; typeshed says only SimplePath.
    path = cast(Path, dist.locate_file(_LOG_WMSE_IR_FILE))
    try:
        data = path.read_bytes()
    except OSError:
        raise missing from None
    taps = np.asarray(_ArrayOnlyUnpickler(io.BytesIO(data)).load(), dtype=np.float32).ravel()
    taps.setflags(write=False)
    return taps


# --------------------------------------------------------------------------------------------
# STFT in blocks of frames
# --------------------------------------------------------------------------------------------

# About 2 M spectrogram bins per block: large enough for few Python iterations, small enough to
# stay in cache-friendly territory and keep a 180-s track's spectrogram out of memory.
_BINS_PER_BLOCK = 1 << 21


def stft_chunks(
    signals: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, pad_mode: str
) -> Iterator[torch.Tensor]:
    """Yield `torch.stft(signals, n_fft, hop, window=window, center=True, pad_mode=pad_mode)`
    as consecutive blocks of frames, each shaped (rows, n_fft // 2 + 1, frames_in_block)."""
    half = n_fft // 2
    length = signals.shape[-1]
    # torch.stft pads the whole signal by n_fft // 2 on each side; only the two padded edges are
    # built here (from the half + 1 samples a reflection needs), the rest are views of the signal.
    head = F.pad(signals[..., : half + 1].unsqueeze(1), (half, 0), mode=pad_mode).squeeze(1)[..., :half]
    tail = F.pad(signals[..., -half - 1 :].unsqueeze(1), (0, half), mode=pad_mode).squeeze(1)[..., -half:]
    pieces = ((0, head), (half, signals), (half + length, tail))  # (start in padded coordinates, piece)
    n_frames = 1 + (length + 2 * half - n_fft) // hop
    block = max(1, _BINS_PER_BLOCK // (signals.shape[0] * (n_fft // 2 + 1)))
    for first in range(0, n_frames, block):
        last = min(first + block, n_frames)
        start, stop = first * hop, (last - 1) * hop + n_fft  # in padded coordinates
        parts = [
            piece[..., max(start, at) - at : min(stop, at + piece.shape[-1]) - at]
            for at, piece in pieces
            if max(start, at) < min(stop, at + piece.shape[-1])
        ]
        segment = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        yield torch.stft(segment, n_fft, hop, window=window, center=False, return_complex=True)


# --------------------------------------------------------------------------------------------
# FIR filtering
# --------------------------------------------------------------------------------------------

_SAMPLES_PER_PASS = 1 << 20  # output samples per row transformed at once (bounds memory)


def fir_filter(signals: torch.Tensor, taps: torch.Tensor, offset: int, length: int) -> torch.Tensor:
    """Samples [offset, offset + length) of the full linear convolution of each row with `taps`.

    signals: (rows, samples); taps: (n_taps,) of the same dtype. Overlap-save: each FFT block of
    size `block` yields `block − n_taps + 1` exact output samples.
    """
    n_taps = taps.shape[-1]
    block = max(4096, 1 << (8 * n_taps - 1).bit_length())  # measured sweet spot
    step = block - n_taps + 1
    n_blocks = -(-length // step)
    # Full-convolution index m needs input samples m − n_taps + 1 … m: lead with n_taps − 1 zeros.
    needed = offset + (n_blocks - 1) * step + block
    padded = F.pad(signals, (n_taps - 1, max(0, needed - (signals.shape[-1] + n_taps - 1))))
    frames = padded[..., offset:needed].unfold(-1, block, step)
    response = torch.fft.rfft(taps, n=block)
    blocks_per_pass = max(1, _SAMPLES_PER_PASS // step)
    parts = [
        torch.fft.irfft(torch.fft.rfft(frames[:, first : first + blocks_per_pass]) * response, n=block)[
            ..., n_taps - 1 :
        ]
        for first in range(0, n_blocks, blocks_per_pass)
    ]
    return torch.cat(parts, dim=1).reshape(signals.shape[0], -1)[:, :length]
