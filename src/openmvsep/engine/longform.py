"""Separating a file of any length with a bounded working set.

The file is cut into overlapping segments (the same plan and crossfade the service uses for long jobs);
each segment is decoded, separated and its stems written to float WAVs in a scratch folder; then each stem
is joined segment by segment into its output file. Memory holds one segment (and its stems) at a time,
whatever the length of the input.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from openmvsep.engine import audio
from openmvsep.engine.joins import Chunk, join_chunks, plan_chunks
from openmvsep.engine.separator import LoadedModel, separate


def separate_file(
    loaded: LoadedModel,
    source: Path,
    outputs: Callable[[str], Path],
    *,
    segment_seconds: float = 300.0,
    overlap_seconds: float = 2.0,
    on_segment: Callable[[int, int], None] | None = None,
    **options,
) -> dict[str, Path]:
    """Write each stem of `source` to `outputs(stem)` as float32 WAV at the model's rate; returns the paths."""
    rate = loaded.sample_rate
    info = audio.probe(source)
    total_estimate = max(1, int(round(info.duration * rate)))
    segment = max(4, int(segment_seconds * rate))
    overlap = min(int(overlap_seconds * rate), segment // 4)  # short segments get a shorter crossfade
    plan = plan_chunks(total_estimate, segment, overlap)
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="openmvsep-") as scratch_dir:
        scratch = Path(scratch_dir)
        lengths: list[int] = []
        stems: list[str] = []
        for chunk in plan:
            last = chunk.index == len(plan) - 1
            # The last segment reads to the real end: a probed duration can be a few samples off.
            mix, _ = audio.read_audio(
                source,
                sample_rate=rate,
                start=chunk.start / rate,
                duration=None if last else (chunk.end - chunk.start) / rate,
            )
            result = separate(loaded, mix, **options)
            stems = list(result)
            for stem, data in result.items():
                sf.write(
                    scratch / f"{chunk.index:05d}_{stem}.wav", np.asarray(data, np.float32).T, rate, subtype="FLOAT"
                )
            lengths.append(mix.shape[-1])
            if on_segment:
                on_segment(chunk.index + 1, len(plan))
        total = plan[-1].start + lengths[-1]
        for stem in stems:

            def pieces(stem: str = stem):
                for chunk, length in zip(plan, lengths):
                    data, _ = sf.read(scratch / f"{chunk.index:05d}_{stem}.wav", dtype="float32", always_2d=True)
                    yield Chunk(chunk.index, chunk.start, chunk.start + length), data.T

            target = outputs(stem)
            with sf.SoundFile(target, "w", samplerate=rate, channels=_channels(scratch, stem), subtype="FLOAT") as out:
                for block in join_chunks(pieces(), total, overlap):
                    out.write(block.T)
            written[stem] = target
    return written


def _channels(scratch: Path, stem: str) -> int:
    first = sorted(scratch.glob(f"*_{stem}.wav"))[0]
    return sf.info(first).channels
