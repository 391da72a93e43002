"""Chunked overlap-add separation for every non-demucs model (ENGINES.md §b.1).

The maths is the reference implementation's, with one deliberate difference: the reference builds one
window per *batch* of chunks, so its output depends on the batch size (its last batch loses every
fade-out). Here every chunk gets the window its own position calls for — no fade-in on the first chunk,
no fade-out on the last — which is exactly what the reference computes with a batch size of 1, for any
batch size.

Steps, with C the chunk size, S = C // num_overlap the step, F = C // 10 the fade:
1. window: ones, with inclusive linear ramps 0→1 over the first F and 1→0 over the last F samples;
2. when the input is longer than 2·(C − S), reflect-pad both ends by C − S;
3. chunks start at 0, S, 2S, … while inside the padded input; a short last chunk is padded to C
   (reflect when longer than C/2, zeros otherwise);
4. each model output is weighted by its window and added into an accumulator on the model's device,
   the window into a running sum; the result is their quotient (0/0 → 0), borders dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from openmvsep.engine.precision import autocast_for


@dataclass(frozen=True)
class ChunkPlan:
    chunk_size: int
    num_overlap: int

    def __post_init__(self) -> None:
        if self.chunk_size < 1 or self.num_overlap < 1 or self.num_overlap > self.chunk_size:
            raise ValueError(f"bad chunking: chunk_size={self.chunk_size}, num_overlap={self.num_overlap}")

    @property
    def step(self) -> int:
        return self.chunk_size // self.num_overlap

    @property
    def fade(self) -> int:
        return self.chunk_size // 10

    @property
    def border(self) -> int:
        return self.chunk_size - self.step

    def pads(self, length: int) -> bool:
        return length > 2 * self.border and self.border > 0

    def starts(self, padded_length: int) -> range:
        return range(0, padded_length, self.step)


def fade_window(plan: ChunkPlan, device: torch.device | None = None) -> torch.Tensor:
    window = torch.ones(plan.chunk_size, device=device)
    if plan.fade:
        window[-plan.fade :] = torch.linspace(1, 0, plan.fade, device=device)
        window[: plan.fade] = torch.linspace(0, 1, plan.fade, device=device)
    return window


def _chunks(mix: torch.Tensor, plan: ChunkPlan) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(start, valid length, chunk padded to C) for each chunk of an already border-padded mix."""
    total = mix.shape[-1]
    for start in plan.starts(total):
        part = mix[:, start : start + plan.chunk_size]
        length = part.shape[-1]
        if length < plan.chunk_size:
            mode = "reflect" if length > plan.chunk_size // 2 else "constant"
            part = F.pad(part, (0, plan.chunk_size - length), mode=mode)
        yield start, length, part


def demix(
    run: Callable[[torch.Tensor], torch.Tensor],
    mix: torch.Tensor,
    plan: ChunkPlan,
    *,
    num_stems: int,
    batch_size: int = 1,
    precision: str = "fp32",
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Separate `mix` (channels, samples) with `run` (batch of chunks -> stems); returns (stems, channels, samples).

    `run` maps (batch, channels, C) to (batch, stems, channels, C) or, for one stem, (batch, channels, C).
    The accumulators live on the mix's device; the caller moves the mix there.
    """
    device = mix.device
    mix = mix.float()
    length = mix.shape[-1]
    padded = plan.pads(length)
    if padded:
        mix = F.pad(mix[None], (plan.border, plan.border), mode="reflect")[0]
    total = mix.shape[-1]
    starts = plan.starts(total)
    last_index = len(starts) - 1
    base = fade_window(plan, device)
    first = base.clone()
    first[: plan.fade] = 1
    last = base.clone()
    if plan.fade:
        last[-plan.fade :] = 1

    result = torch.zeros((num_stems, mix.shape[0], total), dtype=torch.float32, device=device)
    weight = torch.zeros(total, dtype=torch.float32, device=device)
    pending: list[tuple[int, int, int]] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        with torch.inference_mode(), autocast_for(device, precision):
            out = run(torch.stack(batch))
        out = out.float()
        if out.dim() == 3:
            out = out.unsqueeze(1)
        for j, (index, start, valid) in enumerate(pending):
            # The reference's batch-size-1 rule: chunk 0 has no fade-in; the last has no fade-out unless it is chunk 0.
            window = first if index == 0 else last if index == last_index else base
            result[..., start : start + valid] += out[j, ..., :valid] * window[:valid]
            weight[start : start + valid] += window[:valid]
            if progress:
                progress(index + 1, last_index + 1)
        batch.clear()
        pending.clear()

    for index, (start, valid, part) in enumerate(_chunks(mix, plan)):
        batch.append(part)
        pending.append((index, start, valid))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()

    out = torch.nan_to_num(result / weight, nan=0.0)
    if padded:
        out = out[..., plan.border : -plan.border]
    return out
