"""Split long inputs into overlapping chunks and join the processed chunks without clicks.

Chunk ``i`` owns the frames between boundaries ``b_i = i * chunk_frames`` and
``b_{i+1}``, and additionally reads ``overlap_frames`` on either side. Around each
inner boundary the joined output crossfades over ``[b_i - overlap, b_i + overlap)``
from the previous chunk's output to the next one's. The fade weights sum to exactly
one and the mix is linear, so an identity process joins back to the input and stems
that add up to the input still add up after joining.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # first input frame this chunk reads (overlap included)
    end: int  # one past the last input frame it reads


def plan_chunks(total_frames: int, chunk_frames: int, overlap_frames: int) -> list[Chunk]:
    """Chunks covering ``[0, total_frames)``; see the module docstring for the layout.

    A trailing remainder shorter than two overlaps would be too short to hold both
    its crossfades, so it is merged into the previous chunk instead.
    """
    if total_frames < 0:
        raise ValueError("total_frames must not be negative")
    if chunk_frames <= 0:
        raise ValueError("chunk_frames must be positive")
    if overlap_frames < 0 or 2 * overlap_frames > chunk_frames:
        # Each chunk must be able to hold its two crossfade regions without them overlapping.
        raise ValueError("overlap_frames must be between 0 and chunk_frames / 2")

    if total_frames <= chunk_frames:
        return [Chunk(index=0, start=0, end=total_frames)]

    count = -(-total_frames // chunk_frames)  # ceiling division
    remainder = total_frames - (count - 1) * chunk_frames
    if remainder < 2 * overlap_frames:
        count -= 1

    chunks = []
    for index in range(count):
        start = max(0, index * chunk_frames - overlap_frames)
        is_last = index == count - 1
        end = total_frames if is_last else min(total_frames, (index + 1) * chunk_frames + overlap_frames)
        chunks.append(Chunk(index=index, start=start, end=end))
    return chunks


def crossfade_weights(overlap_frames: int) -> np.ndarray:
    """Fade-in weights (raised cosine) over ``2 * overlap_frames`` frames; fade-out is ``1 - w``."""
    length = 2 * overlap_frames
    # Sample at half-frame offsets so the ramp is symmetric: w[k] + w[length-1-k] == 1.
    phase = (np.arange(length, dtype=np.float64) + 0.5) / length
    return (np.sin(0.5 * np.pi * phase) ** 2).astype(np.float32)


def join_chunks(
    pieces: Iterable[tuple[Chunk, np.ndarray]], total_frames: int, overlap_frames: int
) -> Iterator[np.ndarray]:
    """Yield consecutive (channels, n) float32 blocks covering exactly ``[0, total_frames)``.

    ``pieces`` must arrive in index order as produced by :func:`plan_chunks` with the
    same ``total_frames`` and ``overlap_frames``; each array is the processed output of
    that chunk, shaped (channels, chunk.end - chunk.start). Only the previous chunk's
    outgoing crossfade region is kept between pieces.
    """
    fade_in = crossfade_weights(overlap_frames)
    pending_tail: np.ndarray | None = None  # previous chunk's output over [b_i - ov, b_i + ov)
    emitted = 0  # frames yielded so far == where the next chunk's own output begins
    expected_index = 0

    for chunk, output in pieces:
        output = np.asarray(output, dtype=np.float32)
        _check_piece(chunk, output, expected_index, total_frames)
        expected_index += 1

        if chunk.start != emitted:
            # Both after a crossfade tail and at the very start, the output stands
            # exactly where this chunk's first read frame is.
            raise ValueError(f"chunk {chunk.index} starts at {chunk.start}, expected {emitted}")
        cursor = 0  # first frame of this piece not yet accounted for in the output
        if pending_tail is not None:
            incoming = output[:, : pending_tail.shape[1]]
            if incoming.shape != pending_tail.shape:
                raise ValueError(f"chunk {chunk.index} does not match the previous chunk's tail")
            # tail + w * (head - tail): exactly the tail where both agree, so an
            # identity process reproduces its input bit for bit.
            blend = incoming - pending_tail
            blend *= fade_in
            blend += pending_tail
            pending_tail = None
            cursor = blend.shape[1]
            emitted += cursor
            if cursor:
                yield blend

        is_last = chunk.end == total_frames
        own_end = output.shape[1] if is_last else output.shape[1] - 2 * overlap_frames
        if own_end < cursor:
            raise ValueError(f"chunk {chunk.index} is shorter than its two crossfades")
        if own_end > cursor:
            yield output[:, cursor:own_end]
            emitted += own_end - cursor
        if is_last:
            break
        # Copy so the rest of this piece can be freed while we wait for the next one.
        pending_tail = output[:, own_end:].copy()

    if emitted != total_frames:
        raise ValueError(f"chunks covered {emitted} of {total_frames} frames")


def _check_piece(chunk: Chunk, output: np.ndarray, expected_index: int, total_frames: int) -> None:
    if chunk.index != expected_index:
        raise ValueError(f"expected chunk {expected_index}, got chunk {chunk.index}")
    if output.ndim != 2 or output.shape[1] != chunk.end - chunk.start:
        raise ValueError(
            f"chunk {chunk.index} output must be (channels, {chunk.end - chunk.start}), got {output.shape}"
        )
    if chunk.end > total_frames:
        raise ValueError(f"chunk {chunk.index} reads past the end of the input")
