"""Waveform peaks: the lowest and highest sample of each of `buckets` equal slices of a file, all channels taken
together, so a page draws a stem's waveform without decoding the stem itself.

The file is decoded block by block (decode.iter_audio), so memory holds one block and the bucket arrays, whatever
the length of the track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openmvsep.engine.audio.decode import iter_audio
from openmvsep.engine.audio.probe import probe
from openmvsep.engine.audio.source import PathLike

BLOCK_FRAMES = 1 << 16  # frames decoded at a time


@dataclass(frozen=True)
class Peaks:
    duration: float  # seconds of decoded audio
    mins: np.ndarray  # float32 (buckets,), the lowest sample of each bucket over all channels
    maxs: np.ndarray  # float32 (buckets,), the highest


def bucket_count(duration: float, per_second: float, max_buckets: int) -> int:
    """`per_second` buckets for each second, at least one and at most `max_buckets`."""
    return max(1, min(max_buckets, int(np.ceil(duration * per_second))))


def compute_peaks(path: PathLike, *, per_second: float, max_buckets: int) -> Peaks:
    """The peaks of a whole file. Bucket i covers frames [i*n//buckets, (i+1)*n//buckets) of its n frames (n as
    the probe counts it from the stream; frames past it, if the decoder gives more, go to the last bucket)."""
    info = probe(path)
    frames = max(1, int(round(info.duration * info.sample_rate)))
    buckets = bucket_count(info.duration, per_second, max_buckets)
    edges = (np.arange(buckets + 1, dtype=np.int64) * frames) // buckets
    mins = np.full(buckets, np.inf, np.float32)
    maxs = np.full(buckets, -np.inf, np.float32)
    offset = 0
    for block in iter_audio(path, block_frames=BLOCK_FRAMES):
        lo, hi = block.min(axis=0), block.max(axis=0)
        # Buckets this block touches, and where each starts inside the block.
        first = min(buckets - 1, int(np.searchsorted(edges, offset, side="right")) - 1)
        last = max(first, min(buckets - 1, int(np.searchsorted(edges, offset + lo.shape[0] - 1, side="right")) - 1))
        starts = np.clip(edges[first : last + 1] - offset, 0, lo.shape[0] - 1)
        starts[0] = 0
        keep = np.concatenate([[True], starts[1:] > starts[:-1]])  # reduceat needs increasing starts
        owners = np.arange(first, last + 1)[keep]
        np.minimum.at(mins, owners, np.minimum.reduceat(lo, starts[keep]))
        np.maximum.at(maxs, owners, np.maximum.reduceat(hi, starts[keep]))
        offset += lo.shape[0]
    unseen = ~np.isfinite(mins)  # the decoder gave fewer frames than counted: silence there
    mins[unseen] = 0.0
    maxs[unseen] = 0.0
    return Peaks(info.duration, mins, maxs)
