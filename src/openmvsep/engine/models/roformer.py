"""BS-RoFormer and Mel-Band RoFormer, numerically equal to the reference (MSST `msst` 0.1.0).

Public checkpoints load unchanged: every parameter and persistent buffer has the reference's name and
shape, so `load_state_dict(reference_state_dict, strict=True)` works. The computation is the
reference's, reorganised for speed:

* the 60-62 per-band Linear layers of the band split run as a handful of batched GEMMs. Neighbouring
  bands of similar width form a group; their weights are stacked (and zero-padded to the widest band of
  the group) at call time, so the parameter names stay per band. The mask estimators' layers are large
  enough to run band by band, writing straight into the group-padded mask layout;
* attention goes through `scaled_dot_product_attention`;
* the rotary (RoPE) and polar (PoPE) tables are built once per forward, with positions in fp32 (the
  reference builds them in the query dtype, which rounds positions above 2048 under fp16 autocast);
* STFT, the band split, mask application and iSTFT always run in fp32, so a model cast to fp16/bf16, or
  run under autocast, only computes its network in low precision.

Shapes: the input is (batch, channels, samples) (or (batch, samples) for mono models). `BSRoformer`
returns (batch, stems, channels, samples); `MelBandRoformer` returns the same, except that it drops the
stem axis when exactly one mask head runs, as the reference does. `active_stem_ids` runs only the
listed mask heads (in that order). Output is always float32.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openmvsep.engine.config import Config, ConfigError
from openmvsep.engine.mel import slaney_mel_filterbank
from openmvsep.engine.precision import full_precision

__all__ = [
    "BSRoformer",
    "MelBandRoformer",
    "DEFAULT_FREQS_PER_BANDS",
    "bs_roformer_from_config",
    "mel_band_roformer_from_config",
    "slaney_mel_filterbank",
]

# The reference's default band layout for n_fft 2048 (1025 bins).
DEFAULT_FREQS_PER_BANDS: tuple[int, ...] = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)

# Neighbouring bands share one batched GEMM while the widest is at most this much wider than the
# narrowest; the zero padding this costs stays below 25 % of those (small) layers.
_GROUP_WIDTH_RATIO = 1.25


# ---------------------------------------------------------------------------------------------
# Small building blocks (names and formulas as in the reference)
# ---------------------------------------------------------------------------------------------


class _Fp32Buffers(nn.Module):
    """A module whose listed float buffers stay float32 when the model is cast to fp16/bf16.

    They hold constants (RoPE frequencies, norm scales) whose rounding would change the output;
    device moves still apply.
    """

    _fp32_buffers: tuple[str, ...] = ()

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> nn.Module:
        kept: dict[str, Tensor] = {}
        for name in self._fp32_buffers:
            buffer = self._buffers.get(name)
            if buffer is not None:
                kept[name] = buffer
        super()._apply(fn, recurse)
        for name, original in kept.items():
            moved = self._buffers[name]
            assert moved is not None  # Module._apply maps each non-None buffer to a tensor
            self._buffers[name] = original.to(device=moved.device, dtype=torch.float32)
        return self


class RMSNorm(nn.Module):
    """x / max(||x||, 1e-12) * sqrt(dim) * gamma (the reference's variant: no mean-square epsilon)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class RotaryEmbedding(_Fp32Buffers):
    """Holds RoPE frequencies under the reference's key (`freqs`); pairs are interleaved (x0, x1)."""

    _fp32_buffers = ("freqs",)
    freqs: Tensor

    def __init__(self, dim: int, theta: float = 10000) -> None:
        super().__init__()
        self.register_buffer("freqs", 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim)))

    def table(self, seq_len: int, device: torch.device) -> tuple[Tensor]:
        """exp(i · position × frequency), (seq_len, dim/2), complex64."""
        positions = torch.arange(seq_len, device=device, dtype=torch.float32)
        angles = positions[:, None] * self.freqs.float()[None, :]
        return (torch.complex(angles.cos(), angles.sin()),)


class PolarEmbedding(_Fp32Buffers):
    """PoPE (PoPE-pytorch's `PoPE`): softplus magnitudes at position angles, a learned key phase bias."""

    _fp32_buffers = ("inv_freqs",)
    inv_freqs: Tensor

    def __init__(self, dim: int, heads: int, theta: float = 10000) -> None:
        super().__init__()
        self.register_buffer("inv_freqs", theta ** -(torch.arange(dim).float() / dim))
        self.bias = nn.Parameter(torch.zeros(heads, dim))

    def table(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(q cos, q sin) of shape (seq, dim) and (k cos, k sin) of shape (heads, seq, dim), fp32."""
        positions = torch.arange(seq_len, device=device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freqs.float()[None, :]
        key_angles = angles + self.bias.float().clamp(-2.0 * math.pi, 0.0)[:, None, :]
        return angles.cos(), angles.sin(), key_angles.cos(), key_angles.sin()


def _apply_rotary(t: Tensor, rotation: Tensor) -> Tensor:
    """Rotate interleaved pairs (x0, x1) of the last axis by the table's angles, in fp32.

    A pair read as x0 + i·x1 times exp(iθ) is (x0 cos θ − x1 sin θ) + i(x1 cos θ + x0 sin θ), the
    reference's formula, in one complex multiply instead of several shuffles.
    """
    pairs = torch.view_as_complex(t.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).to(t.dtype)


def _polar_features(t: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """softplus(t) placed at the given angles, as interleaved (re, im): last axis doubles."""
    magnitude = F.softplus(t.float())
    return torch.stack((magnitude * cos, magnitude * sin), dim=-1).flatten(-2)


class Attention(nn.Module):
    """RMSNorm → qkv → RoPE/PoPE → softmax attention → per-head sigmoid gate → out projection."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        rotary_embed: RotaryEmbedding | None = None,
        pope_embed: PolarEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.rotary_embed = rotary_embed
        self.pope_embed = pope_embed
        inner = heads * dim_head
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False))

    def forward(self, x: Tensor, position: tuple[Tensor, ...] | None = None) -> Tensor:
        batch, length, _ = x.shape
        x = self.norm(x)
        qkv = self.to_qkv(x).view(batch, length, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        if self.pope_embed is not None:
            assert position is not None  # _Roformer always passes the PoPE table to PoPE layers
            q_cos, q_sin, k_cos, k_sin = position
            q = _polar_features(qkv[0], q_cos, q_sin)
            k = _polar_features(qkv[1], k_cos, k_sin)
            v = qkv[2]
            out = F.scaled_dot_product_attention(q.to(v.dtype), k.to(v.dtype), v, scale=self.dim_head**-0.5)
        else:
            if self.rotary_embed is not None:
                assert position is not None  # _Roformer always passes the RoPE table to RoPE layers
                (rotation,) = position
                qk = _apply_rotary(qkv[:2], rotation)
                q, k = qk[0], qk[1]
            else:
                q, k = qkv[0], qkv[1]
            out = F.scaled_dot_product_attention(q, k, qkv[2])
        gates = self.to_gates(x).sigmoid()  # (batch, length, heads)
        out = out.transpose(1, 2) * gates.unsqueeze(-1)
        return self.to_out(out.reshape(batch, length, self.heads * self.dim_head))


class LinearAttention(nn.Module):
    """Cross-covariance attention (El-Nouby et al.): heads attend over feature channels, not tokens.

    q and k are L2-normalised along the token axis, q is scaled by exp(temperature), the logits by 8.
    """

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        inner = heads * dim_head
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Sequential(nn.Linear(dim, inner * 3, bias=False))
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.to_out = nn.Sequential(nn.Identity(), nn.Linear(inner, dim, bias=False))

    def forward(self, x: Tensor, position: tuple[Tensor, ...] | None = None) -> Tensor:
        batch, length, _ = x.shape
        x = self.norm(x)
        # (3, batch, heads, dim_head, tokens)
        qkv = self.to_qkv(x).view(batch, length, 3, self.heads, self.dim_head).permute(2, 0, 3, 4, 1)
        q = F.normalize(qkv[0], dim=-1) * self.temperature.exp()
        k = F.normalize(qkv[1], dim=-1)
        attention = (torch.matmul(q, k.transpose(-1, -2)) * 8).softmax(dim=-1)
        out = torch.matmul(attention, qkv[2])  # (batch, heads, dim_head, tokens)
        return self.to_out(out.permute(0, 3, 1, 2).reshape(batch, length, self.heads * self.dim_head))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = int(dim * mult)
        # Identity where the reference has Dropout, so that the Linear layers keep indices 1 and 4.
        self.net = nn.Sequential(
            RMSNorm(dim), nn.Linear(dim, inner), nn.GELU(), nn.Identity(), nn.Linear(inner, dim), nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Transformer(nn.Module):
    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        heads: int,
        dim_head: int,
        norm_output: bool,
        rotary_embed: RotaryEmbedding | None = None,
        pope_embed: PolarEmbedding | None = None,
        linear_attn: bool = False,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            if linear_attn:
                attn: nn.Module = LinearAttention(dim, heads, dim_head)
            else:
                attn = Attention(dim, heads, dim_head, rotary_embed=rotary_embed, pope_embed=pope_embed)
            self.layers.append(nn.ModuleList([attn, FeedForward(dim)]))
        self.norm = RMSNorm(dim) if norm_output else nn.Identity()

    def forward(self, x: Tensor, position: tuple[Tensor, ...] | None = None) -> Tensor:
        # Each layer is ModuleList([attention, feed-forward]); ModuleList's items are typed as bare Modules.
        for attn, ff in cast("Iterable[nn.ModuleList]", self.layers):
            x = attn(x, position) + x
            x = ff(x) + x
        return self.norm(x)


# ---------------------------------------------------------------------------------------------
# Band layout and the batched band-wise layers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    """A run of neighbouring bands [first, first + count) padded to `width` features each."""

    first: int
    count: int
    width: int
    start: int  # offset of this group's padded slots in the concatenation of all groups


class _BandLayout:
    """Where each band's input features sit in the STFT feature vector, and how bands are grouped.

    The STFT feature vector of one frame has F·S·2 entries ordered (frequency, channel, re/im). Band b
    reads `sizes[b]` of them; `source[offsets[b] + j]` is the position of its j-th feature. One extra
    all-zero slot (index F·S·2) serves as padding.
    """

    def __init__(self, source: np.ndarray, sizes: Sequence[int], num_features: int) -> None:
        self.sizes = [int(s) for s in sizes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.total = int(sum(self.sizes))
        self.num_features = num_features
        self.groups: list[_Group] = []
        first, start = 0, 0
        while first < len(self.sizes):
            end, low, high = first + 1, self.sizes[first], self.sizes[first]
            while end < len(self.sizes):
                low2, high2 = min(low, self.sizes[end]), max(high, self.sizes[end])
                if high2 > low2 * _GROUP_WIDTH_RATIO:
                    break
                low, high, end = low2, high2, end + 1
            self.groups.append(_Group(first, end - first, high, start))
            start += (end - first) * high
            first = end
        self.padded_total = start

        # Per padded slot: its band feature index (or `total` for padding), by group.
        slot = np.full(self.padded_total, self.total, dtype=np.int64)
        for g in self.groups:
            for i in range(g.count):
                band = g.first + i
                begin = g.start + i * g.width
                slot[begin : begin + self.sizes[band]] = self.offsets[band] + np.arange(self.sizes[band])
        self.slot_feature = slot
        source_with_pad = np.concatenate([source.astype(np.int64), [num_features]])
        # Per padded slot: position in the STFT feature vector (padding → the zero slot).
        self.slot_source = source_with_pad[slot]


class BandSplit(_Fp32Buffers):
    """Per band: RMSNorm(band width) → Linear(band width → dim); run as one GEMM per band group."""

    _fp32_buffers = ("_norm_scale",)
    _slot_source: Tensor
    _slot_feature: Tensor
    _norm_scale: Tensor

    def __init__(self, dim: int, layout: _BandLayout) -> None:
        super().__init__()
        self.dim_inputs = tuple(layout.sizes)
        self.layout = layout
        self.to_features = nn.ModuleList(nn.Sequential(RMSNorm(size), nn.Linear(size, dim)) for size in layout.sizes)
        self.register_buffer("_slot_source", torch.from_numpy(layout.slot_source), persistent=False)
        self.register_buffer("_slot_feature", torch.from_numpy(layout.slot_feature), persistent=False)
        scales = torch.tensor([size**0.5 for size in layout.sizes], dtype=torch.float32)
        self.register_buffer("_norm_scale", scales, persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        """features: (F·S·2 + 1, frames) with a zero last row → (bands, frames, dim)."""
        # In fp32 under autocast: its inputs are raw spectrogram values, whose rounding to bf16 alone costs a
        # full-size model's output 6 dB of SNR against fp32 (36 dB → 42.6 dB with this block in fp32).
        with full_precision(features.device):
            return self._split(features.float())

    def _split(self, features: Tensor) -> Tensor:
        # Each band is Sequential(RMSNorm, Linear); torch types container items as bare Modules.
        bands = [
            (cast(RMSNorm, seq[0]), cast(nn.Linear, seq[1]))
            for seq in cast("Iterable[nn.Sequential]", self.to_features)
        ]
        dim = bands[0][1].out_features
        weight = bands[0][1].weight
        # All bands' weights as rows (band feature → dim), plus a zero row for padding slots.
        weights = torch.cat([linear.weight.t() for _, linear in bands] + [weight.new_zeros(1, dim)])
        gammas = torch.cat([norm.gamma for norm, _ in bands] + [weight.new_zeros(1)])
        biases = torch.stack([linear.bias for _, linear in bands])
        outs = []
        for g in self.layout.groups:
            slots = slice(g.start, g.start + g.count * g.width)
            x = features.index_select(0, self._slot_source[slots]).view(g.count, g.width, features.shape[1])
            scale = self._norm_scale[g.first : g.first + g.count].view(-1, 1, 1)
            gamma = gammas.index_select(0, self._slot_feature[slots]).view(g.count, g.width, 1)
            x = F.normalize(x, dim=1) * scale * gamma
            w = weights.index_select(0, self._slot_feature[slots]).view(g.count, g.width, dim)
            b = biases[g.first : g.first + g.count].unsqueeze(1)
            outs.append(torch.baddbmm(b, x.transpose(1, 2).to(w.dtype), w))
        return torch.cat(outs)


class MaskEstimator(nn.Module):
    """Per band: MLP(dim → hidden … → 2·band width, Tanh between) → GLU.

    Runs band by band: each band's layers are already large GEMMs (frames × hidden), and stacking all
    bands' hidden weights (60 × 1536² for Mel-RoFormer) or their (bands, frames, hidden) activations
    would copy and hold gigabytes for no speed gain on CPU.
    """

    def __init__(self, dim: int, layout: _BandLayout, num_linear: int, hidden: int) -> None:
        super().__init__()
        self.dim_inputs = tuple(layout.sizes)
        self.layout = layout
        self.num_linear = num_linear
        self.to_freqs = nn.ModuleList()
        for size in layout.sizes:
            dims = [dim] + [hidden] * (num_linear - 1) + [2 * size]
            mlp: list[nn.Module] = []
            for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
                mlp.append(nn.Linear(d_in, d_out))
                if i < num_linear - 1:
                    mlp.append(nn.Tanh())
            self.to_freqs.append(nn.Sequential(nn.Sequential(*mlp), nn.GLU(dim=-1)))

    def forward(self, x: Tensor) -> Tensor:
        """x: (bands, frames, dim) → float32 masks (padded slots, frames) in the layout's slot order.

        Padding slots stay zero; they map to the discarded feature row.
        """
        layout = self.layout
        out = torch.zeros(layout.padded_total, x.shape[1], dtype=torch.float32, device=x.device)
        last = 2 * (self.num_linear - 1)
        for g in layout.groups:
            for i in range(g.count):
                band = g.first + i
                # to_freqs[band] is Sequential(Sequential(Linear, Tanh, …, Linear), GLU); torch types
                # container items as bare Modules.
                mlp = cast(nn.Sequential, cast(nn.Sequential, self.to_freqs[band])[0])
                h = x[band].to(cast(nn.Linear, mlp[0]).weight.dtype)
                for layer in range(0, last, 2):
                    linear = cast(nn.Linear, mlp[layer])
                    h = F.linear(h, linear.weight, linear.bias).tanh_()
                # (2·size, frames): values then gates, already in the output's (slot, frame) layout.
                output = cast(nn.Linear, mlp[last])
                y = torch.addmm(output.bias.unsqueeze(1), output.weight, h.t())
                size = layout.sizes[band]
                begin = g.start + i * g.width
                out[begin : begin + size] = y[:size] * y[size:].sigmoid()
        return out


def _mel_band_bins(sample_rate: float, n_fft: int, num_bands: int) -> np.ndarray:
    """Binary (bands, bins) membership: the reference forces the first and last entries on."""
    bank = slaney_mel_filterbank(sample_rate, n_fft, num_bands).copy()
    bank[0, 0] = 1.0
    bank[-1, -1] = 1.0
    member = bank > 0
    if not member.any(axis=0).all():
        raise ConfigError(f"model.num_bands={num_bands} leaves some of the {n_fft // 2 + 1} STFT bins in no mel band")
    return member


# ---------------------------------------------------------------------------------------------
# The two models
# ---------------------------------------------------------------------------------------------

_IGNORED_KEYS = (
    "flash_attn", "sage_attention", "use_torch_checkpoint", "attn_dropout", "ff_dropout", "dim_freqs_in",
    "multi_stft_resolution_loss_weight", "multi_stft_resolutions_window_sizes", "multi_stft_hop_size",
    "multi_stft_normalized", "multi_stft_window_fn",
)  # fmt: skip


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"model.{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"model.{name} must be true or false, got {value!r}")


class _TransformerArgs(TypedDict):
    dim: int
    heads: int
    dim_head: int
    norm_output: bool


class _PositionArgs(TypedDict, total=False):
    """The one position embedding a trunk transformer gets (RoPE or PoPE)."""

    rotary_embed: RotaryEmbedding
    pope_embed: PolarEmbedding


class _StftKwargs(TypedDict):
    n_fft: int
    hop_length: int
    win_length: int
    normalized: bool


class _Roformer(nn.Module, ABC):
    """What both models share: STFT, band split, axial transformer trunk, masks, iSTFT."""

    _mel = False
    _mask_target: Tensor

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        stereo: bool,
        num_stems: int,
        time_transformer_depth: int,
        freq_transformer_depth: int,
        linear_transformer_depth: int,
        dim_head: int,
        heads: int,
        stft_n_fft: int,
        stft_hop_length: int,
        stft_win_length: int,
        stft_normalized: bool,
        stft_window_fn: Any,
        zero_dc: bool,
        mask_estimator_depth: int,
        mlp_expansion_factor: int,
        skip_connection: bool,
        use_pope: bool,
    ) -> None:
        super().__init__()
        dim = _int("dim", dim, 1)
        depth = _int("depth", depth, 1)
        heads = _int("heads", heads, 1)
        dim_head = _int("dim_head", dim_head, 2)
        if dim_head % 2:
            raise ConfigError(f"model.dim_head must be even (rotary pairs), got {dim_head}")
        self.stereo = _bool("stereo", stereo)
        self.audio_channels = 2 if self.stereo else 1
        self.num_stems = _int("num_stems", num_stems, 1)
        self.skip_connection = _bool("skip_connection", skip_connection)
        self.zero_dc = _bool("zero_dc", zero_dc)
        use_pope = _bool("use_pope", use_pope)
        time_depth = _int("time_transformer_depth", time_transformer_depth, 0)
        freq_depth = _int("freq_transformer_depth", freq_transformer_depth, 0)
        linear_depth = _int("linear_transformer_depth", linear_transformer_depth, 0)
        mask_depth = _int("mask_estimator_depth", mask_estimator_depth, 0)
        expansion = _int("mlp_expansion_factor", mlp_expansion_factor, 1)
        if stft_window_fn is not None:
            raise ConfigError("model.stft_window_fn is not supported (the Hann window is built in)")
        n_fft = _int("stft_n_fft", stft_n_fft, 2)
        win_length = _int("stft_win_length", stft_win_length, 1)
        if win_length > n_fft:
            raise ConfigError(f"model.stft_win_length ({win_length}) must not exceed stft_n_fft ({n_fft})")
        self.stft_kwargs = _StftKwargs(
            n_fft=n_fft,
            hop_length=_int("stft_hop_length", stft_hop_length, 1),
            win_length=win_length,
            normalized=_bool("stft_normalized", stft_normalized),
        )
        self.num_freqs = n_fft // 2 + 1

        norm_each = self._mel  # Mel-RoFormer: each transformer ends in RMSNorm; BS: one final_norm
        common = _TransformerArgs(dim=dim, heads=heads, dim_head=dim_head, norm_output=norm_each)
        embed_time: RotaryEmbedding | PolarEmbedding
        embed_freq: RotaryEmbedding | PolarEmbedding
        time_args: _PositionArgs
        freq_args: _PositionArgs
        if use_pope:
            embed_time, embed_freq = PolarEmbedding(dim_head, heads), PolarEmbedding(dim_head, heads)
            time_args, freq_args = _PositionArgs(pope_embed=embed_time), _PositionArgs(pope_embed=embed_freq)
        else:
            embed_time, embed_freq = RotaryEmbedding(dim_head), RotaryEmbedding(dim_head)
            time_args, freq_args = _PositionArgs(rotary_embed=embed_time), _PositionArgs(rotary_embed=embed_freq)
        # Shared by every block, as in the reference; a tuple keeps them out of this module's own keys.
        self._position_embeds = (embed_time, embed_freq)
        self.layers = nn.ModuleList()
        for _ in range(depth):
            block: list[nn.Module] = []
            if linear_depth > 0:
                block.append(Transformer(depth=linear_depth, linear_attn=True, **common))
            block.append(Transformer(depth=time_depth, **time_args, **common))
            block.append(Transformer(depth=freq_depth, **freq_args, **common))
            self.layers.append(nn.ModuleList(block))
        if not self._mel:
            self.final_norm = RMSNorm(dim)

        layout = self._band_layout()
        self.band_split = BandSplit(dim, layout)
        num_linear = mask_depth + 1 if self._mel else max(mask_depth, 1)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(dim, layout, num_linear, dim * expansion) for _ in range(self.num_stems)
        )
        self.register_buffer("_mask_target", torch.from_numpy(layout.slot_source), persistent=False)

    # Subclasses: the band layout, and the iSTFT length rule.
    @abstractmethod
    def _band_layout(self) -> _BandLayout: ...

    @abstractmethod
    def _istft_length(self, samples: int) -> int | None: ...

    def _average_masks(self, masks: Tensor) -> Tensor:
        return masks

    def _position_tables(
        self, frames: int, bands: int, device: torch.device
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        embed_time, embed_freq = self._position_embeds
        return embed_time.table(frames, device), embed_freq.table(bands, device)

    def forward(
        self,
        raw_audio: Tensor,
        target: Tensor | None = None,
        active_stem_ids: Sequence[int] | None = None,
        return_loss_breakdown: bool = False,
    ) -> Tensor:
        if target is not None or return_loss_breakdown:
            raise ValueError("this is an inference engine: call the model with audio only (no training target)")
        if raw_audio.ndim == 2:
            raw_audio = raw_audio.unsqueeze(1)
        if raw_audio.ndim != 3 or raw_audio.shape[1] != self.audio_channels:
            raise ValueError(
                f"expected audio of shape (batch, {self.audio_channels}, samples) for a "
                f"{'stereo' if self.stereo else 'mono'} model, got {tuple(raw_audio.shape)}"
            )
        if active_stem_ids is None:
            stem_ids = list(range(self.num_stems))
        else:
            stem_ids = [int(i) for i in active_stem_ids]
            if not stem_ids or any(i < 0 or i >= self.num_stems for i in stem_ids):
                raise ValueError(f"active_stem_ids must be non-empty ids in [0, {self.num_stems}), got {stem_ids}")

        batch, channels, samples = raw_audio.shape
        device = raw_audio.device
        window = torch.hann_window(self.stft_kwargs["win_length"], device=device)
        spec = torch.stft(
            raw_audio.reshape(batch * channels, samples).float(), **self.stft_kwargs, window=window, return_complex=True
        )
        freqs, frames = spec.shape[-2:]
        spec = spec.view(batch, channels, freqs, frames)

        # (F·S·2 [+1 zero row for padding slots], batch·frames), features ordered (freq, channel, re/im).
        num_features = freqs * channels * 2
        features = spec.new_zeros(num_features + 1, batch * frames, dtype=torch.float32)
        features[:num_features].view(freqs, channels, 2, batch, frames).copy_(
            torch.view_as_real(spec).permute(2, 1, 4, 0, 3)
        )

        x = self.band_split(features)  # (bands, batch·frames, dim)
        bands, _, dim = x.shape
        x = x.view(bands, batch, frames, dim).transpose(0, 1).reshape(batch * bands, frames, dim)
        time_position, freq_position = self._position_tables(frames, bands, device)

        # The trunk keeps x as (batch·bands, frames, dim) between blocks ("time layout").
        stored: list[Tensor] = []
        # Each block is ModuleList([linear?, time, freq transformers]); ModuleList's items are bare Modules.
        for i, block in enumerate(cast("Iterable[nn.ModuleList]", self.layers)):
            if len(block) == 3:
                linear_transformer, time_transformer, freq_transformer = block
                x = linear_transformer(x.reshape(batch, bands * frames, dim)).view(batch * bands, frames, dim)
            else:
                time_transformer, freq_transformer = block
            if self.skip_connection:
                for previous in stored:
                    x = x + previous
            x = time_transformer(x, time_position)
            x = x.view(batch, bands, frames, dim).transpose(1, 2).reshape(batch * frames, bands, dim)
            x = freq_transformer(x, freq_position)
            if i < len(self.layers) - 1 or self.skip_connection:
                x = x.view(batch, frames, bands, dim).transpose(1, 2).reshape(batch * bands, frames, dim)
            if self.skip_connection:
                stored.append(x)
        if self.skip_connection:  # back to (batch·frames, bands, dim)
            x = x.view(batch, bands, frames, dim).transpose(1, 2).reshape(batch * frames, bands, dim)
        if not self._mel:
            x = self.final_norm(x)
        x = x.transpose(0, 1).contiguous()  # (bands, batch·frames, dim)

        masks = features.new_zeros(len(stem_ids), num_features + 1, batch * frames)
        for row, stem in enumerate(stem_ids):
            masks[row].index_add_(0, self._mask_target, self.mask_estimators[stem](x).float())
        masks = self._average_masks(masks[:, :num_features])
        masks = masks.view(len(stem_ids), freqs, channels, 2, batch, frames).permute(4, 0, 2, 1, 5, 3)
        masked = spec.unsqueeze(1) * torch.view_as_complex(masks.contiguous())  # (b, stems, ch, F, frames)
        if self.zero_dc:
            masked[:, :, :, 0] = 0.0
        audio = torch.istft(
            masked.reshape(-1, freqs, frames),
            **self.stft_kwargs,
            window=window,
            return_complex=False,
            length=self._istft_length(samples),
        )
        audio = audio.view(batch, len(stem_ids), channels, -1)
        if self._mel and len(stem_ids) == 1:
            audio = audio.squeeze(1)
        return audio


class BSRoformer(_Roformer):
    """Band-Split RoFormer (MSST `bs_roformer`): contiguous bands given by `freqs_per_bands`.

    Returns (batch, stems, channels, samples) for every number of active stems; the output has the
    input's length.
    """

    def __init__(
        self,
        dim: int,
        *,
        depth: int,
        stereo: bool = False,
        num_stems: int = 1,
        time_transformer_depth: int = 2,
        freq_transformer_depth: int = 2,
        linear_transformer_depth: int = 0,
        freqs_per_bands: Sequence[int] = DEFAULT_FREQS_PER_BANDS,
        dim_head: int = 64,
        heads: int = 8,
        stft_n_fft: int = 2048,
        stft_hop_length: int = 512,
        stft_win_length: int = 2048,
        stft_normalized: bool = False,
        stft_window_fn: Any = None,
        zero_dc: bool = True,
        mask_estimator_depth: int = 2,
        mlp_expansion_factor: int = 4,
        skip_connection: bool = False,
        use_pope: bool = False,
        **_ignored: Any,  # training-only and retired keys (flash_attn, sage_attention, dropout, …)
    ) -> None:
        if isinstance(freqs_per_bands, (str, bytes)) or not isinstance(freqs_per_bands, Sequence):
            raise ConfigError(f"model.freqs_per_bands must be a list of integers, got {freqs_per_bands!r}")
        self.freqs_per_bands = tuple(_int("freqs_per_bands[]", f, 1) for f in freqs_per_bands)
        super().__init__(
            dim=dim, depth=depth, stereo=stereo, num_stems=num_stems, time_transformer_depth=time_transformer_depth,
            freq_transformer_depth=freq_transformer_depth, linear_transformer_depth=linear_transformer_depth,
            dim_head=dim_head, heads=heads, stft_n_fft=stft_n_fft, stft_hop_length=stft_hop_length,
            stft_win_length=stft_win_length, stft_normalized=stft_normalized, stft_window_fn=stft_window_fn,
            zero_dc=zero_dc, mask_estimator_depth=mask_estimator_depth, mlp_expansion_factor=mlp_expansion_factor,
            skip_connection=skip_connection, use_pope=use_pope,
        )  # fmt: skip

    def _band_layout(self) -> _BandLayout:
        if len(self.freqs_per_bands) < 2 or sum(self.freqs_per_bands) != self.num_freqs:
            raise ConfigError(
                f"model.freqs_per_bands must list at least 2 bands covering the {self.num_freqs} STFT bins of "
                f"stft_n_fft={self.stft_kwargs['n_fft']}, got {len(self.freqs_per_bands)} bands summing to "
                f"{sum(self.freqs_per_bands)}"
            )
        per_bin = 2 * self.audio_channels
        num_features = self.num_freqs * per_bin
        return _BandLayout(np.arange(num_features), [f * per_bin for f in self.freqs_per_bands], num_features)

    def _istft_length(self, samples: int) -> int | None:
        return samples


class MelBandRoformer(_Roformer):
    """Mel-Band RoFormer (MSST `mel_band_roformer`): overlapping bands from a binarised mel filterbank.

    Returns (batch, stems, channels, samples), or (batch, channels, samples) when one mask head runs.
    The output length is hop·(frames − 1) unless `match_input_audio_length` is set (the reference's
    rule), which equals the input length when the hop divides it.
    """

    _mel = True
    _bands_per_feature: Tensor

    def __init__(
        self,
        dim: int,
        *,
        depth: int,
        stereo: bool = False,
        num_stems: int = 1,
        time_transformer_depth: int = 2,
        freq_transformer_depth: int = 2,
        linear_transformer_depth: int = 0,
        num_bands: int = 60,
        dim_head: int = 64,
        heads: int = 8,
        sample_rate: int = 44100,
        stft_n_fft: int = 2048,
        stft_hop_length: int = 512,
        stft_win_length: int = 2048,
        stft_normalized: bool = False,
        stft_window_fn: Any = None,
        zero_dc: bool = True,
        mask_estimator_depth: int = 1,
        match_input_audio_length: bool = False,
        mlp_expansion_factor: int = 4,
        skip_connection: bool = False,
        use_pope: bool = False,
        **_ignored: Any,  # training-only and retired keys (flash_attn, sage_attention, dropout, …)
    ) -> None:
        self.num_bands = _int("num_bands", num_bands, 1)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or sample_rate <= 0:
            raise ConfigError(f"model.sample_rate must be a positive number, got {sample_rate!r}")
        self.sample_rate = sample_rate
        self.match_input_audio_length = _bool("match_input_audio_length", match_input_audio_length)
        super().__init__(
            dim=dim, depth=depth, stereo=stereo, num_stems=num_stems, time_transformer_depth=time_transformer_depth,
            freq_transformer_depth=freq_transformer_depth, linear_transformer_depth=linear_transformer_depth,
            dim_head=dim_head, heads=heads, stft_n_fft=stft_n_fft, stft_hop_length=stft_hop_length,
            stft_win_length=stft_win_length, stft_normalized=stft_normalized, stft_window_fn=stft_window_fn,
            zero_dc=zero_dc, mask_estimator_depth=mask_estimator_depth, mlp_expansion_factor=mlp_expansion_factor,
            skip_connection=skip_connection, use_pope=use_pope,
        )  # fmt: skip

    def _band_layout(self) -> _BandLayout:
        member = _mel_band_bins(self.sample_rate, self.stft_kwargs["n_fft"], self.num_bands)
        channels = self.audio_channels
        # Band b reads, for each of its bins f (ascending) and channel s, the (re, im) pair of (f, s).
        bins = [np.flatnonzero(row) for row in member]
        source = np.concatenate(
            [((f[:, None, None] * channels + np.arange(channels)[:, None]) * 2 + np.arange(2)).ravel() for f in bins]
        )
        counts = member.sum(axis=0)  # bands covering each bin; masks of overlapping bands are averaged
        self.register_buffer(
            "_bands_per_feature",
            torch.from_numpy(np.repeat(counts, channels * 2).astype(np.float32)).view(-1, 1),
            persistent=False,
        )
        num_features = self.num_freqs * channels * 2
        return _BandLayout(source, [len(f) * channels * 2 for f in bins], num_features)

    def _average_masks(self, masks: Tensor) -> Tensor:
        return masks / self._bands_per_feature.float()

    def _istft_length(self, samples: int) -> int | None:
        return samples if self.match_input_audio_length else None


# ---------------------------------------------------------------------------------------------
# Construction from a config
# ---------------------------------------------------------------------------------------------


def _model_kwargs(config: Config | Mapping[str, Any], family: str) -> dict[str, Any]:
    model = config.get("model") if isinstance(config, Mapping) else None
    if not isinstance(model, Mapping):
        raise ConfigError(f"a {family} config needs a 'model' section (a mapping)")
    for key in ("dim", "depth"):
        if key not in model:
            raise ConfigError(f"model.{key} is missing from the {family} config")
    kwargs = {str(k): v for k, v in model.items() if k not in _IGNORED_KEYS}
    return kwargs


def bs_roformer_from_config(config: Config | Mapping[str, Any]) -> BSRoformer:
    """Build a `BSRoformer` from an MSST config (keys under `model`; unknown keys are ignored)."""
    return BSRoformer(**_model_kwargs(config, "bs_roformer"))


def mel_band_roformer_from_config(config: Config | Mapping[str, Any]) -> MelBandRoformer:
    """Build a `MelBandRoformer` from an MSST config (keys under `model`; unknown keys are ignored)."""
    return MelBandRoformer(**_model_kwargs(config, "mel_band_roformer"))
