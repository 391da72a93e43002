"""Scoring a submission against its dataset: SDR first (streamed, exact, seconds), the other metrics after.

The leaderboard SDR is QUALITY.md's global SDR. Two 16-bit PCM files are compared in integers: the sample
differences and energies are exact, and scaling by 2^-30 (soundfile's 1/32768, squared) is exact too, so the
result is the float64 definition without its rounding. Other encodings are read as float64, as the reference
code reads them. The SDR pass holds a few pairs of files in memory (a 3-minute stereo 16-bit pair is 64 MB).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

from openmvsep.quality import metrics
from openmvsep.quality.datasets import Dataset
from openmvsep.quality.submission import Submission, SubmissionError

BLOCK_SAMPLES = 1 << 17  # small enough to stay in cache between the conversions and the two dot products
READ_AHEAD = 2  # pairs of files read before they are needed
PCM16_SCALE = 2.0**-30  # (1/32768)^2: int16 energies -> soundfile's float energies
FRAMEWISE = "framewise_sdr"  # museval-style: median over 1-s frames per track, median over tracks
Progress = Callable[[int, int], None]


@dataclass
class Scores:
    stems: tuple[str, ...]
    tracks: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)  # song -> stem -> metric
    warnings: list[str] = field(default_factory=list)

    def metric_names(self) -> list[str]:
        names = {m for stems in self.tracks.values() for values in stems.values() for m in values}
        return [m for m in (*metrics.ALL_METRICS, FRAMEWISE) if m in names]

    def aggregate(self, stem: str, metric: str) -> float | None:
        """A stem's column: the mean over tracks (MVSep), or for framewise SDR the median (SiSEC's convention)."""
        values = [v for song in self.tracks.values() if (v := song.get(stem, {}).get(metric)) is not None]
        if not values:
            return None
        return float(np.median(values)) if metric == FRAMEWISE else float(np.mean(values))

    def means(self) -> dict[str, dict[str, float | None]]:
        return {stem: {m: self.aggregate(stem, m) for m in self.metric_names()} for stem in self.stems}

    def to_json(self) -> dict:
        """`{"sdr": {stem: mean}, "tracks": {song: {stem: sdr}}, <metric>: {stem: aggregate}, ...}`."""
        out: dict = {
            "sdr": {s: self.aggregate(s, "sdr") for s in self.stems},
            "tracks": {song: {s: v.get("sdr") for s, v in stems.items()} for song, stems in self.tracks.items()},
        }
        for metric in self.metric_names():
            if metric != "sdr":
                out[metric] = {s: self.aggregate(s, metric) for s in self.stems}
        if len(self.metric_names()) > 1:
            out["track_metrics"] = self.tracks
        out["warnings"] = self.warnings
        return out


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _read_pair(dataset: Dataset, submission: Submission, song: str, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """A reference and its estimate as flat arrays: int16 when both are 16-bit PCM, else float64."""
    with sf.SoundFile(dataset.reference_path(song, stem)) as ref, submission.open(song, stem) as est:
        dtype = "int16" if ref.subtype == est.subtype == "PCM_16" else "float64"
        r, e = ref.read(dtype=dtype), est.read(dtype=dtype)
    if len(r) != len(e):
        raise SubmissionError(f"The audio of {song}_{stem} ends early: the file is truncated")
    return r.reshape(-1), e.reshape(-1)


def _energies(r: np.ndarray, e: np.ndarray) -> tuple[float, float]:
    """(Σ s², Σ (s − ŝ)²) over both channels, in cache-sized blocks."""
    exact = r.dtype == np.int16
    ref_sum, err_sum = (0, 0) if exact else (0.0, 0.0)
    for start in range(0, r.size, BLOCK_SAMPLES):
        rb, eb = r[start : start + BLOCK_SAMPLES], e[start : start + BLOCK_SAMPLES]
        if exact:  # int16 -> float64 is exact and so are these sums (each block's total < 2^53)
            rf = rb.astype(np.float64)
            d = np.subtract(eb, rb, dtype=np.float64)
            ref_sum += int(rf @ rf)
            err_sum += int(d @ d)
        else:
            d = eb - rb
            ref_sum += float(rb @ rb)
            err_sum += float(d @ d)
    if exact:
        return ref_sum * PCM16_SCALE, err_sum * PCM16_SCALE
    return ref_sum, err_sum


def score_sdr(
    dataset: Dataset, submission: Submission, *, threads: int = 1, progress: Progress | None = None
) -> Scores:
    """The leaderboard numbers: global SDR of every (track, stem).

    One thread reads files whole, in order, a few pairs ahead; `threads` threads do the arithmetic (file reads
    and numpy release the GIL). A cold disk serves one sequential reader several times faster than readers
    taking turns, and on two cores one arithmetic thread keeps up with it (measured on 25 GB from a cold page
    cache: 16 s with one, 27 s with two). Memory: about READ_AHEAD + threads pairs of files."""
    pairs = [(song.name, stem) for song in dataset.songs for stem in submission.stems]
    scores = Scores(submission.stems, {song.name: {} for song in dataset.songs})
    computing: deque = deque()  # (pair, future of its sums), oldest first
    recorded = 0

    def record() -> None:
        nonlocal recorded
        (song, stem), future = computing.popleft()
        ref_energy, err_energy = future.result()
        scores.tracks[song][stem] = {"sdr": metrics.sdr_from_sums(ref_energy, err_energy)}
        if ref_energy == 0:
            scores.warnings.append(
                f"{song}: the {stem} reference is silent, so its SDR only measures the estimate's energy"
            )
        recorded += 1
        if progress:
            progress(recorded, len(pairs))

    # BLAS's own threads on top of ours fight over the cores: each dot product here is small (measured: 60 pairs
    # in 1.8 s with single-threaded BLAS, 3.4-10.8 s without).
    with (
        threadpool_limits(1, user_api="blas"),
        ThreadPoolExecutor(1) as reader,
        ThreadPoolExecutor(max(1, threads)) as workers,
    ):
        reads = deque(reader.submit(_read_pair, dataset, submission, *p) for p in pairs[:READ_AHEAD])
        next_read = len(reads)
        for pair in pairs:
            arrays = reads.popleft().result()
            if next_read < len(pairs):
                reads.append(reader.submit(_read_pair, dataset, submission, *pairs[next_read]))
                next_read += 1
            computing.append((pair, workers.submit(_energies, *arrays)))
            while len(computing) > max(1, threads):
                record()
        while computing:
            record()
    return scores


def _read(f: sf.SoundFile) -> np.ndarray:
    data = f.read(dtype="float64", always_2d=True)
    if len(data) != f.frames:
        raise SubmissionError(f"The audio of {f.name} ends early: the file is truncated")
    return data.T


def score_metrics(
    dataset: Dataset, submission: Submission, scores: Scores, *, progress: Progress | None = None
) -> Scores:
    """Add the secondary metrics and the framewise SDR to `scores`, one track at a time (all its stems in memory).

    The secondary metrics take MSST's rate constant whatever the dataset's rate, as MSST's get_metrics() does.
    """
    skipped = metrics.unavailable_metrics()
    scores.warnings.extend(f"{name} was not computed: {reason}" for name, reason in skipped.items())
    for i, song in enumerate(dataset.songs):
        with sf.SoundFile(dataset.mixture_path(song.name)) as f:
            mixture = _read(f)
        refs, ests = [], []
        for stem in submission.stems:
            with sf.SoundFile(dataset.reference_path(song.name, stem)) as f:
                refs.append(_read(f))
            with submission.open(song.name, stem) as f:
                ests.append(_read(f))
        frame_medians = metrics.median_framewise_sdr(np.stack(refs), np.stack(ests), dataset.sample_rate)
        for stem, ref, est, median in zip(submission.stems, refs, ests, frame_medians):
            values = scores.tracks[song.name].setdefault(stem, {})
            values.update(metrics.secondary_metrics(mixture, ref, est, metrics.MSST_SAMPLE_RATE, skip=skipped))
            values[FRAMEWISE] = _finite(median)
            if np.isnan(median):
                scores.warnings.append(f"{song.name}: no frame of {stem} could be scored framewise (silence)")
            elif np.isinf(median):
                scores.warnings.append(
                    f"{song.name}: the {stem} estimate equals its reference in most frames (infinite framewise SDR)"
                )
        if progress:
            progress(i + 1, len(dataset.songs))
    return scores
