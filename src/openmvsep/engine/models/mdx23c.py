"""MDX23C (TFC-TDF v3): a U-Net over the complex spectrogram, split into frequency subbands.

The network follows the reference implementation's (MSST `mdx23c_tfc_tdf_v3`) layer layout so that its
checkpoints load with `load_state_dict(strict=True)`; the code is our own.

Data flow of `forward` for input (batch, channels, samples):

1. STFT (periodic Hann of n_fft, centred, reflect padding) of every channel; keep the lowest `dim_f` bins.
   Feature channels are ordered channel-major, then (real, imaginary).
2. Subbands: the `dim_f` bins are cut into `num_subbands` equal slices that become extra feature channels
   (channel index = feature * num_subbands + subband).
3. `first_conv` (1x1), then a U-Net whose tensors are laid out (batch, channels, frames, bins): each scale
   is a stack of TFC-TDF blocks (3x3 convs plus a bottleneck MLP across the bins of a frame) followed by a
   strided down-convolution; the decoder mirrors it with transposed convolutions and skip concatenation.
4. The decoder output is multiplied by the `first_conv` output, concatenated with the subband spectrogram
   and projected by `final_conv` to (stems x features) channels; subbands are folded back, the bins above
   `dim_f` are zero, and the inverse STFT gives the stems.

Output: (batch, stems, channels, samples') even for one stem, with samples' = samples - samples % hop_length
(the inverse STFT runs without a target length, as in the reference; chunk sizes are multiples of the hop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from openmvsep.engine.config import Config, ConfigError

NormFactory = Callable[[int], nn.Module]


class InstanceNorm(nn.Module):
    """Per-channel instance normalisation with an affine map (`nn.InstanceNorm2d(c, affine=True)`'s weights).

    Computed as a group norm with one group per channel: the same statistics, but torch's group-norm
    kernel is several times faster than its instance-norm path on CPU. No running statistics are kept,
    exactly like the reference module, so state_dict keys stay `weight` / `bias`.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # instance_norm runs in the input's dtype under autocast (its kernels accumulate in fp32), whereas
        # autocast would upcast group_norm to fp32 and triple the memory traffic of this bandwidth-bound op on
        # a GPU; so keep the input dtype here too.
        with torch.autocast(x.device.type, enabled=False):
            return F.group_norm(x, self.channels, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


def norm_factory(kind: str) -> NormFactory:
    """The normalisation named by `model.norm`: BatchNorm, InstanceNorm, GroupNorm<groups>, anything else = none."""
    if kind == "BatchNorm":
        return nn.BatchNorm2d
    if kind == "InstanceNorm":
        return InstanceNorm
    if "GroupNorm" in kind:
        try:
            groups = int(kind.replace("GroupNorm", ""))
        except ValueError:
            raise ConfigError(f"model.norm {kind!r}: expected GroupNorm<number of groups>") from None
        if groups < 1:
            raise ConfigError(f"model.norm {kind!r}: the group count must be positive")
        return lambda channels: nn.GroupNorm(num_groups=groups, num_channels=channels)
    return lambda channels: nn.Identity()


def activation(kind: str) -> nn.Module:
    """The activation named by `model.act`: gelu, relu, or elu<alpha> (plain `elu` means alpha 1)."""
    if kind == "gelu":
        return nn.GELU()
    if kind == "relu":
        return nn.ReLU()
    if kind.startswith("elu"):
        alpha_text = kind[3:] or "1.0"
        try:
            return nn.ELU(float(alpha_text))
        except ValueError:
            raise ConfigError(f"model.act {kind!r}: expected elu<alpha>") from None
    raise ConfigError(f"model.act {kind!r} is not supported (gelu, relu, elu<alpha>)")


class TfcTdfStack(nn.Module):
    """`layers` TFC-TDF blocks. Input (batch, in_channels, frames, bins) -> (batch, channels, frames, bins).

    Each block: shortcut 1x1 conv of the input; TFC (norm, act, 3x3 conv); plus TDF (a two-layer MLP over the
    bins of each frame with a `bottleneck` reduction, norm/act before each layer) as a residual; a second TFC;
    plus the shortcut.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        layers: int,
        bins: int,
        bottleneck: int,
        norm: NormFactory,
        act: nn.Module,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            block = nn.Module()
            # Sequential indices (norm 0, act 1, layer 2, ...) are part of the checkpoint keys.
            block.tfc1 = nn.Sequential(norm(in_channels), act, nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False))
            block.tdf = nn.Sequential(
                norm(channels),
                act,
                nn.Linear(bins, bins // bottleneck, bias=False),
                norm(channels),
                act,
                nn.Linear(bins // bottleneck, bins, bias=False),
            )
            block.tfc2 = nn.Sequential(norm(channels), act, nn.Conv2d(channels, channels, 3, 1, 1, bias=False))
            block.shortcut = nn.Conv2d(in_channels, channels, 1, 1, 0, bias=False)
            self.blocks.append(block)
            in_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in cast("Iterable[_TfcTdfBlock]", self.blocks):
            shortcut = block.shortcut(x)
            x = block.tfc1(x)
            x = x + block.tdf(x)
            x = block.tfc2(x)
            x = x + shortcut
        return x


class _TfcTdfBlock(Protocol):
    """A block of `TfcTdfStack`: a bare nn.Module whose submodules were set as attributes (checkpoint keys)."""

    tfc1: nn.Sequential
    tdf: nn.Sequential
    tfc2: nn.Sequential
    shortcut: nn.Conv2d


class Resample(nn.Module):
    """Norm, act, then a strided (transposed) convolution that changes (frames, bins) by `scale`."""

    def __init__(
        self, in_channels: int, out_channels: int, scale: tuple[int, int], norm: NormFactory, act: nn.Module, up: bool
    ) -> None:
        super().__init__()
        conv_type = nn.ConvTranspose2d if up else nn.Conv2d
        self.conv = nn.Sequential(
            norm(in_channels),
            act,
            conv_type(in_channels, out_channels, kernel_size=scale, stride=scale, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Spectrogram(nn.Module):
    """The reference's STFT pair. Transforms run in fp32 (torch's FFTs do not take bf16 on CPU)."""

    window: torch.Tensor

    def __init__(self, n_fft: int, hop_length: int, dim_f: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.dim_f = dim_f
        # Not in the reference checkpoints: a non-persistent buffer follows .to(device) without a key.
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> (batch, channels * 2, dim_f, frames), features = (channel, re/im)."""
        batch, channels, samples = audio.shape
        spec = torch.stft(
            audio.reshape(batch * channels, samples).float(),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window.float(),
            center=True,
            return_complex=True,
        )
        spec = torch.view_as_real(spec[:, : self.dim_f])  # (batch*channels, dim_f, frames, 2)
        return spec.permute(0, 3, 1, 2).reshape(batch, channels * 2, self.dim_f, -1)

    def inverse(self, spec: torch.Tensor) -> torch.Tensor:
        """(..., channels * 2, dim_f, frames) -> (..., channels, samples); bins above dim_f are zero."""
        *lead, features, bins, frames = spec.shape
        spec = F.pad(spec.float(), (0, 0, 0, self.n_fft // 2 + 1 - bins))
        spec = spec.reshape(-1, 2, self.n_fft // 2 + 1, frames)
        spec = torch.complex(spec[:, 0], spec[:, 1])
        audio = torch.istft(spec, n_fft=self.n_fft, hop_length=self.hop_length, window=self.window.float(), center=True)
        return audio.reshape(*lead, features // 2, audio.shape[-1])


class _EncoderBlock(Protocol):
    """An encoder level of `MDX23C`: a bare nn.Module holding these submodules (checkpoint keys)."""

    tfc_tdf: TfcTdfStack
    downscale: Resample


class _DecoderBlock(Protocol):
    """A decoder level of `MDX23C`: a bare nn.Module holding these submodules (checkpoint keys)."""

    upscale: Resample
    tfc_tdf: TfcTdfStack


class MDX23C(nn.Module):
    """TFC-TDF v3 network; parameter names equal MSST's `TFC_TDF_net`. See the module docstring."""

    def __init__(
        self,
        *,
        n_fft: int,
        hop_length: int,
        dim_f: int,
        audio_channels: int,
        num_stems: int,
        num_subbands: int,
        num_scales: int,
        scale: tuple[int, int],
        blocks_per_scale: int,
        channels: int,
        growth: int,
        bottleneck_factor: int,
        norm: str,
        act: str,
    ) -> None:
        super().__init__()
        self.audio_channels = audio_channels
        self.num_stems = num_stems
        self.num_subbands = num_subbands
        self.num_scales = num_scales
        self.scale = scale
        norm_of = norm_factory(norm)
        act_module = activation(act)

        features = num_subbands * audio_channels * 2  # spectrogram channels after the subband split
        bins = dim_f // num_subbands
        width = channels

        self.first_conv = nn.Conv2d(features, width, 1, 1, 0, bias=False)
        self.encoder_blocks = nn.ModuleList()
        for _ in range(num_scales):
            block = nn.Module()
            block.tfc_tdf = TfcTdfStack(width, width, blocks_per_scale, bins, bottleneck_factor, norm_of, act_module)
            block.downscale = Resample(width, width + growth, scale, norm_of, act_module, up=False)
            bins //= scale[1]
            width += growth
            self.encoder_blocks.append(block)

        self.bottleneck_block = TfcTdfStack(
            width, width, blocks_per_scale, bins, bottleneck_factor, norm_of, act_module
        )

        self.decoder_blocks = nn.ModuleList()
        for _ in range(num_scales):
            block = nn.Module()
            block.upscale = Resample(width, width - growth, scale, norm_of, act_module, up=True)
            bins *= scale[1]
            width -= growth
            block.tfc_tdf = TfcTdfStack(
                2 * width, width, blocks_per_scale, bins, bottleneck_factor, norm_of, act_module
            )
            self.decoder_blocks.append(block)

        self.final_conv = nn.Sequential(
            nn.Conv2d(width + features, width, 1, 1, 0, bias=False),
            act_module,
            nn.Conv2d(width, num_stems * features, 1, 1, 0, bias=False),
        )
        self.stft = Spectrogram(n_fft, hop_length, dim_f)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> (batch, stems, channels, samples - samples % hop_length)."""
        if mix.dim() != 3 or mix.shape[1] != self.audio_channels:
            raise ValueError(f"expected (batch, {self.audio_channels}, samples), got {tuple(mix.shape)}")
        frames = mix.shape[-1] // self.stft.hop_length + 1
        if frames % self.scale[0] ** self.num_scales:
            raise ValueError(
                f"{mix.shape[-1]} samples give {frames} STFT frames; the U-Net needs a multiple of "
                f"{self.scale[0] ** self.num_scales} (use hop_length * (k * {self.scale[0] ** self.num_scales} - 1))"
            )
        dtype = self.first_conv.weight.dtype
        batch = mix.shape[0]
        k = self.num_subbands

        spec = self.stft(mix).to(dtype)
        _, features, dim_f, frames = spec.shape
        subbands = spec.reshape(batch, features * k, dim_f // k, frames)

        first = self.first_conv(subbands)
        # The U-Net runs on (frames, bins) so that the TDF linears act on the last axis.
        x = first.transpose(-1, -2)
        skips = []
        for block in cast("Iterable[_EncoderBlock]", self.encoder_blocks):
            x = block.tfc_tdf(x)
            skips.append(x)
            x = block.downscale(x)
        x = self.bottleneck_block(x)
        for decoder_block in cast("Iterable[_DecoderBlock]", self.decoder_blocks):
            x = decoder_block.upscale(x)
            x = decoder_block.tfc_tdf(torch.cat([x, skips.pop()], 1))
        x = x.transpose(-1, -2) * first

        x = self.final_conv(torch.cat([subbands, x], 1))
        x = x.reshape(batch, self.num_stems, features, dim_f, frames)
        return self.stft.inverse(x).to(mix.dtype)


def _section(config: Config, name: str) -> Any:
    section = config.get(name) if isinstance(config, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"the mdx23c config needs a '{name}' section")
    return section


def _positive_int(section: Any, section_name: str, key: str, default: int | None = None) -> int:
    value = section.get(key, default)
    if value is None:
        raise ConfigError(f"the mdx23c config needs {section_name}.{key}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{section_name}.{key} must be a positive integer, got {value!r}")
    return value


def stem_names(config: Config) -> list[str]:
    """The stems the network outputs: [training.target_instrument] if set, else training.instruments."""
    training = _section(config, "training")
    target = training.get("target_instrument")
    if target:
        return [str(target)]
    instruments = training.get("instruments")
    if not isinstance(instruments, Sequence) or isinstance(instruments, str) or not instruments:
        raise ConfigError("the mdx23c config needs a non-empty training.instruments list")
    return [str(name) for name in instruments]


def from_config(config: Config) -> MDX23C:
    """Build the network from a whole MSST config (audio.*, model.*, training.instruments/target_instrument)."""
    audio = _section(config, "audio")
    model = _section(config, "model")
    n_fft = _positive_int(audio, "audio", "n_fft")
    hop_length = _positive_int(audio, "audio", "hop_length")
    dim_f = _positive_int(audio, "audio", "dim_f")
    audio_channels = _positive_int(audio, "audio", "num_channels", 2)
    if dim_f > n_fft // 2 + 1:
        raise ConfigError(f"audio.dim_f {dim_f} exceeds the {n_fft // 2 + 1} bins of n_fft {n_fft}")

    num_subbands = _positive_int(model, "model", "num_subbands")
    num_scales = _positive_int(model, "model", "num_scales")
    scale = model.get("scale")
    if (
        not isinstance(scale, Sequence)
        or isinstance(scale, str)
        or len(scale) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in scale)
    ):
        raise ConfigError(f"model.scale must be two positive integers (frames, bins), got {scale!r}")
    if dim_f % num_subbands:
        raise ConfigError(f"audio.dim_f {dim_f} is not divisible by model.num_subbands {num_subbands}")
    if (dim_f // num_subbands) % scale[1] ** num_scales:
        raise ConfigError(
            f"audio.dim_f / num_subbands = {dim_f // num_subbands} bins cannot be halved "
            f"{num_scales} times by scale {scale[1]}"
        )
    for key in ("norm", "act"):
        if not isinstance(model.get(key), str):
            raise ConfigError(f"the mdx23c config needs model.{key} (a string)")

    bottleneck = _positive_int(model, "model", "bottleneck_factor")
    growth = model.get("growth")
    if isinstance(growth, bool) or not isinstance(growth, int) or growth < 0:
        raise ConfigError(f"model.growth must be a non-negative integer, got {growth!r}")
    return MDX23C(
        n_fft=n_fft,
        hop_length=hop_length,
        dim_f=dim_f,
        audio_channels=audio_channels,
        num_stems=len(stem_names(config)),
        num_subbands=num_subbands,
        num_scales=num_scales,
        scale=(scale[0], scale[1]),
        blocks_per_scale=_positive_int(model, "model", "num_blocks_per_scale"),
        channels=_positive_int(model, "model", "num_channels"),
        growth=growth,
        bottleneck_factor=bottleneck,
        norm=model["norm"],
        act=model["act"],
    )
