"""demucs' `apply_model` (split mode, no random shifts) with batched segments and device-side overlap-add.

The result equals `demucs.apply.apply_model(model, mix, shifts=0, split=True, overlap=..., segment=...)` up to
float32 rounding; what changes is how the work is done:

* several segments go through the model in one forward call (demucs runs them one at a time), and
* the triangular-weight overlap-add happens on the compute device, with one output tensor there (demucs adds
  each chunk into a tensor on the mix's device).

The segmentation is demucs': segments of L = int(samplerate · segment) samples every int((1 − overlap) · L)
samples; each is padded, centred, to the length the model wants (the model's training length for HTDemucs),
taking real neighbouring samples where the track has them and zeros beyond it; the output is centre-trimmed
back and weighted by a triangle (peak 1, raised to `transition_power`). Segments whose padded lengths differ
(only for models that run chunks at their own length, e.g. MSST-built HTDemucs) are batched per length.

Any waveform model with demucs' interface runs the same way: `sources`, `audio_channels`, `samplerate`, `segment`
(seconds) and `valid_length(n)`, e.g. `engine.models.demucs_v2.DemucsV2`, whose segments demucs 2.x's own
`apply_model` split identically (same lengths, padding, triangle and trim).

Bags (`demucs.apply.BagOfModels`) run member by member; each stem is the weighted sum of the members' stems
divided by the sum of its weights. With `stems=[...]` only the members that have a non-zero weight for one of
those stems run, so a vocals-only request on htdemucs_ft costs one model instead of four.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import torch
import torch.nn.functional as F
from demucs.apply import BagOfModels
from demucs.apply import Model as DemucsModel
from demucs.htdemucs import HTDemucs
from torch import nn

__all__ = ["Progress", "apply", "normalized_apply", "plan_segments"]

# progress(done, total): called after each forward call, counting segments over all models that run.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Segment:
    offset: int  # first sample of the segment in the track
    length: int  # samples of the track it covers (L, or less at the end)
    padded_length: int  # samples the model is given


def apply(
    model: DemucsModel | BagOfModels,
    mix: torch.Tensor,
    *,
    overlap: float = 0.25,
    segment: float | Fraction | None = None,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    stems: Sequence[str | int] | None = None,
    progress: Progress | None = None,
    transition_power: float = 1.0,
) -> torch.Tensor:
    """Separate `mix` with a demucs model or bag.

    mix: (channels, samples) -> returns (stems, channels, samples); (batch, channels, samples) -> returns
    (batch, stems, channels, samples). float32 on the compute device (`device`, else the model's device);
    move it to the host once with `.cpu()`. Run under `torch.autocast` for reduced precision.
    segment: seconds per segment (default: the model's own `segment`; for HTDemucs it may only be shortened).
    batch_size: segments per forward call (each carries every row of a batched `mix`).
    stems: names (or indices) of the stems to return, in that order; None = all of `model.sources`.
    Models are put in eval mode; with `device` given they are moved there (bag members one at a time, and back).
    """
    if mix.dim() not in (2, 3):
        raise ValueError(f"mix must be (channels, samples) or (batch, channels, samples), got {tuple(mix.shape)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if transition_power < 1:
        raise ValueError("transition_power must be >= 1 (smaller values give ill-shaped transitions)")
    batched = mix.dim() == 3
    tracks = mix if batched else mix[None]
    sources = list(model.sources)
    stem_ids = _stem_indices(sources, stems)
    if tracks.shape[1] != model.audio_channels:
        raise ValueError(f"the model takes {model.audio_channels} channels, mix has {tracks.shape[1]}")

    if isinstance(model, BagOfModels):
        out = _apply_bag(model, tracks, stem_ids, overlap, segment, batch_size, device, progress, transition_power)
    else:
        compute = torch.device(device) if device is not None else _device_of(model)
        model.to(compute)
        counter = _Counter(progress, len(plan_segments(model, tracks.shape[-1], overlap, segment)))
        out = _apply_one(model, tracks, stem_ids, overlap, segment, batch_size, compute, counter, transition_power)
    return out if batched else out[0]


def normalized_apply(
    model: DemucsModel | BagOfModels, mix: torch.Tensor, *, eps: float = 1e-8, **apply_kwargs
) -> torch.Tensor:
    """`apply` with demucs' track-level normalisation (`demucs.api.Separator.separate_tensor`).

    The mono mixdown's mean and (unbiased) std normalise the input — per track when `mix` is batched — and the
    stems are scaled back. `eps` is added to the std (1e-8 in demucs' API; its older CLI used none).
    """
    if mix.dim() not in (2, 3):
        raise ValueError(f"mix must be (channels, samples) or (batch, channels, samples), got {tuple(mix.shape)}")
    reference = mix.mean(dim=-2)  # (samples,) or (batch, samples)
    mean = reference.mean(dim=-1, keepdim=True)[..., None]  # broadcasts over (channels, samples)
    std = reference.std(dim=-1, keepdim=True)[..., None] + eps
    out = apply(model, (mix - mean) / std, **apply_kwargs)
    if mix.dim() == 3:  # out is (batch, stems, channels, samples)
        mean, std = mean[:, None], std[:, None]
    return out * std.to(out.device) + mean.to(out.device)


def plan_segments(
    model: DemucsModel, length: int, overlap: float = 0.25, segment: float | Fraction | None = None
) -> list[Segment]:
    """demucs' segmentation of a track of `length` samples for one (non-bag) model."""
    segment_length = _segment_length(model, segment)
    stride = int((1 - overlap) * segment_length)
    if stride < 1:
        raise ValueError(f"overlap {overlap} leaves no stride for segments of {segment_length} samples")
    plan = []
    for offset in range(0, length, stride):
        covered = min(segment_length, length - offset)
        plan.append(Segment(offset, covered, _model_length(model, covered, segment)))
    return plan


# ----------------------------------------------------------------------------------------------------------------


class _Counter:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def _apply_bag(
    bag: BagOfModels,
    tracks: torch.Tensor,
    stem_ids: list[int],
    overlap: float,
    segment: float | Fraction | None,
    batch_size: int,
    device: torch.device | str | None,
    progress: Progress | None,
    transition_power: float,
) -> torch.Tensor:
    members = [
        (member, [float(weights[k]) for k in stem_ids])
        # BagOfModels keeps its (demucs) models in an nn.ModuleList, whose items are typed as bare Modules.
        for member, weights in zip(cast("Iterable[DemucsModel]", bag.models), bag.weights)
        if any(float(weights[k]) != 0 for k in stem_ids)
    ]
    totals = [sum(weights[j] for _, weights in members) for j in range(len(stem_ids))]
    for j, total in enumerate(totals):
        if total == 0:
            raise ValueError(f"no model of the bag has a non-zero weight for stem {bag.sources[stem_ids[j]]!r}")
    n_segments = sum(len(plan_segments(member, tracks.shape[-1], overlap, segment)) for member, _ in members)
    counter = _Counter(progress, n_segments)

    estimate: torch.Tensor | None = None
    for member, weights in members:
        home = _device_of(member)
        compute = torch.device(device) if device is not None else home
        member.to(compute)
        try:
            out = _apply_one(member, tracks, stem_ids, overlap, segment, batch_size, compute, counter, transition_power)
        finally:
            member.to(home)  # keep at most one member on the accelerator at a time, as demucs does
        for j, weight in enumerate(weights):
            out[:, j] *= weight
        estimate = out if estimate is None else estimate.add_(out.to(estimate.device))
    assert estimate is not None
    for j, total in enumerate(totals):
        estimate[:, j] /= total
    return estimate


def _apply_one(
    model: DemucsModel,
    tracks: torch.Tensor,
    stem_ids: list[int],
    overlap: float,
    segment: float | Fraction | None,
    batch_size: int,
    device: torch.device,
    counter: _Counter,
    transition_power: float,
) -> torch.Tensor:
    model.eval()
    n_tracks, channels, length = tracks.shape
    plan = plan_segments(model, length, overlap, segment)
    segment_length = _segment_length(model, segment)
    weight = _transition_weight(segment_length, transition_power, device)
    tracks = tracks.to(device)
    select = None if stem_ids == list(range(len(model.sources))) else torch.tensor(stem_ids, device=device)

    out = torch.zeros(n_tracks, len(stem_ids), channels, length, device=device)
    weight_sum = torch.zeros(length, device=device)
    # Segments of one padded length batch together; demucs adds them in offset order and so does each group here.
    by_length: dict[int, list[Segment]] = {}
    for seg in plan:
        by_length.setdefault(seg.padded_length, []).append(seg)
    with torch.inference_mode(), _attention_through_sdpa(device):
        for group in by_length.values():
            for first in range(0, len(group), batch_size):
                batch = group[first : first + batch_size]
                inputs = torch.cat([_padded_input(tracks, seg) for seg in batch])
                estimates = model(inputs)
                if select is not None:
                    estimates = estimates.index_select(1, select)
                estimates = estimates.reshape(len(batch), n_tracks, *estimates.shape[1:])
                for seg, estimate in zip(batch, estimates):
                    trim = (estimate.shape[-1] - seg.length) // 2
                    w = weight[: seg.length]
                    span = slice(seg.offset, seg.offset + seg.length)
                    out[..., span] += w * estimate[..., trim : trim + seg.length]
                    weight_sum[span] += w
                counter.advance(len(batch))
    return out / weight_sum


@contextmanager
def _attention_through_sdpa(device: torch.device) -> Iterator[None]:
    """On CPU, `nn.MultiheadAttention` without its inference fast path.

    HTDemucs' self-attention layers would otherwise take torch's fused MHA kernel, which on CPU forms every
    attention matrix with bmm + softmax; the regular path goes through `scaled_dot_product_attention`'s flash
    kernel, as its cross-attention layers already do: the same result (133 dB apart on a 20-s track), about 10 %
    less time per forward on 2 cores. The switch is torch's process-wide flag, restored on the way out;
    GPUs keep the fast path until measured there.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def _padded_input(tracks: torch.Tensor, seg: Segment) -> torch.Tensor:
    """The model's input for one segment: centred in `padded_length` samples of real context, zeros past the ends."""
    extra = seg.padded_length - seg.length
    start = seg.offset - extra // 2
    end = start + seg.padded_length
    inside_start, inside_end = max(0, start), min(tracks.shape[-1], end)
    piece = tracks[..., inside_start:inside_end]
    return F.pad(piece, (inside_start - start, end - inside_end))


def _transition_weight(segment_length: int, power: float, device: torch.device) -> torch.Tensor:
    # Built exactly as demucs builds it (integer ramps, float division by the peak) so the weights are bit-equal.
    half = segment_length // 2
    ramp = torch.cat(
        [
            torch.arange(1, half + 1, device=device),
            torch.arange(segment_length - half, 0, -1, device=device),
        ]
    )
    return (ramp / ramp.max()) ** power


def _segment_length(model: DemucsModel, segment: float | Fraction | None) -> int:
    if segment is None:
        segment = model.segment
    if segment is None or not segment > 0:
        raise ValueError(f"segment must be a positive number of seconds, got {segment!r}")
    if (
        isinstance(model, HTDemucs)
        and model.use_train_segment
        and int(segment * model.samplerate) > int(model.segment * model.samplerate)
    ):
        raise ValueError(
            f"segment {float(segment):.3f} s is longer than this HTDemucs' training segment "
            f"{float(model.segment):.3f} s; it can only be shortened"
        )
    return int(model.samplerate * segment)


def _model_length(model: DemucsModel, covered: int, segment: float | Fraction | None) -> int:
    """The input length demucs gives the model for a segment covering `covered` samples."""
    if isinstance(model, HTDemucs) and segment is not None:
        return int(segment * model.samplerate)
    valid_length = getattr(model, "valid_length", None)
    return valid_length(covered) if valid_length is not None else covered


def _stem_indices(sources: list[str], stems: Sequence[str | int] | None) -> list[int]:
    if stems is None:
        return list(range(len(sources)))
    if isinstance(stems, (str, int)):
        raise TypeError("stems must be a sequence of names or indices")
    indices = []
    for stem in stems:
        if isinstance(stem, str):
            if stem not in sources:
                raise ValueError(f"unknown stem {stem!r}; the model has {sources}")
            indices.append(sources.index(stem))
        elif isinstance(stem, int) and not isinstance(stem, bool) and 0 <= stem < len(sources):
            indices.append(stem)
        else:
            raise ValueError(f"invalid stem {stem!r}; the model has {sources}")
    if not indices:
        raise ValueError("stems must name at least one stem")
    if len(set(indices)) != len(indices):
        raise ValueError(f"stems has duplicates: {list(stems)}")
    return indices


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
