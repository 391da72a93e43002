"""Resampling with soxr, block by block, for decoding to a requested rate and for encoders whose
codec lacks the input's rate."""

from __future__ import annotations

import numpy as np
import soxr


class _StreamingResampler:
    """soxr in streaming mode: output equals a one-shot soxr.resample of the whole signal."""

    def __init__(self, in_rate: int, out_rate: int, channels: int):
        self._resampler = soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32", quality="HQ")
        self._channels = channels

    def push(self, block: np.ndarray) -> np.ndarray:
        out = self._resampler.resample_chunk(np.ascontiguousarray(block.T), last=False)
        return np.ascontiguousarray(out.T)

    def finish(self) -> np.ndarray:
        empty = np.zeros((0, self._channels), dtype=np.float32)
        out = self._resampler.resample_chunk(empty, last=True)
        return np.ascontiguousarray(out.T)
