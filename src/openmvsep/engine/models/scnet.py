"""SCNet (Sparse Compression Network, Tong et al. 2024): the official model as ported in MSST `models/scnet`.

Parameter names equal the reference's so its checkpoints load with `load_state_dict(strict=True)`;
the code is our own. `from_config(config)` reads the keyword arguments from `config.model`.

Data flow of `forward` for input (batch, channels, samples):

1. Right-pad with zeros so that the padded length is an odd multiple of the hop (the pad is 1..2 hops, never
   0) - this gives an even number of STFT frames, which the separation network's real FFT over time needs.
2. STFT with a rectangular window (the reference passes none), `normalized` as configured; features are
   ordered channel-major, then (real, imaginary): dims[0] = 2 * audio_channels.
3. Encoder: per level, a sparse down-sampling layer splits the bins into low/mid/high bands (fractions
   `band_SR`) and convolves each along frequency with its own kernel and stride; a convolution module
   (GLU + depthwise conv, along time) refines each band; the bands are concatenated (the skip) and a 3x3
   "global" conv follows.
4. Separation network: `num_dplayer` dual-path layers (a bidirectional LSTM across frequency, then one across
   time, each with a residual), alternating between the time domain and its real FFT (real and imaginary
   parts as channels, so odd layers have twice the channels).
5. Decoder: per level, a fusion layer (skip added, GLU conv) and a sparse up-sampling layer (transposed conv
   per band, trimmed to the band's original size); the last one outputs stems x features channels.
6. Inverse STFT, then the padding is cut off.

Output: (batch, stems, channels, samples), also for one source.
Note: some SCNet configs set `inference.normalize: true`; that normalisation of the mixture is done by the
demix code around the model, not here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from openmvsep.engine.config import Config, ConfigError

BAND_NAMES = ("low", "mid", "high")


class ConvolutionModule(nn.Module):
    """`depth` residual layers over (rows, channels, time): GroupNorm(1), conv to 2*hidden, GLU, depthwise conv,
    GroupNorm(1), swish, 1x1 conv back to `channels`. hidden = int(channels / compress)."""

    def __init__(self, channels: int, depth: int, compress: float, kernel: int) -> None:
        super().__init__()
        hidden = int(channels / compress)
        pad = kernel // 2
        self.layers = nn.ModuleList(
            nn.Sequential(  # indices are checkpoint keys: 0 norm, 1 conv, 3 depthwise conv, 4 norm, 6 conv
                nn.GroupNorm(1, channels),
                nn.Conv1d(channels, hidden * 2, kernel, padding=pad),
                nn.GLU(1),
                nn.Conv1d(hidden, hidden, kernel, padding=pad, groups=hidden),
                nn.GroupNorm(1, hidden),
                nn.SiLU(),
                nn.Conv1d(hidden, channels, 1),
            )
            for _ in range(abs(depth))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x


def band_bounds(bins: int, fractions: Sequence[float]) -> list[tuple[int, int]]:
    """[start, end) of the low/mid/high bands of `bins` frequency rows (rounded up, as the reference)."""
    low_end = math.ceil(bins * fractions[0])
    mid_end = math.ceil(bins * (fractions[0] + fractions[1]))
    return [(0, low_end), (low_end, mid_end), (mid_end, bins)]


class SparseDownsample(nn.Module):
    """Per band: zero-pad along frequency, then Conv2d with kernel (k, 1) and stride (s, 1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        fractions: Sequence[float],
        strides: Sequence[int],
        kernels: Sequence[int],
    ) -> None:
        super().__init__()
        self.fractions = tuple(fractions)
        self.strides = tuple(strides)
        self.kernels = tuple(kernels)
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, (k, 1), (s, 1)) for k, s in zip(kernels, strides)
        )

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[int]]:
        bounds = band_bounds(x.shape[2], self.fractions)
        bands = []
        for conv, stride, kernel, (start, end) in zip(self.convs, self.strides, self.kernels, bounds):
            rows = end - start
            # Stride 1 keeps the size ("same" padding); larger strides pad up to a multiple of the stride.
            total = kernel - 1 if stride == 1 else (stride - rows % stride) % stride
            band = F.pad(x[:, :, start:end], (0, 0, total // 2, total - total // 2))
            bands.append(conv(band))
        return bands, [end - start for start, end in bounds]


class SDblock(nn.Module):
    """Encoder level: sparse down-sampling, a convolution module per band (along time), GELU, concat, 3x3 conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        fractions: Sequence[float],
        strides: Sequence[int],
        kernels: Sequence[int],
        depths: Sequence[int],
        compress: float,
        conv_kernel: int,
    ) -> None:
        super().__init__()
        self.SDlayer = SparseDownsample(in_channels, out_channels, fractions, strides, kernels)
        self.conv_modules = nn.ModuleList(
            ConvolutionModule(out_channels, depth, compress, conv_kernel) for depth in depths
        )
        self.globalconv = nn.Conv2d(out_channels, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
        bands, original_rows = self.SDlayer(x)
        refined = []
        for module, band in zip(self.conv_modules, bands):
            batch, channels, rows, frames = band.shape
            # Each frequency row is a separate 1-D sequence over time for the convolution module.
            rows_first = band.transpose(1, 2).reshape(batch * rows, channels, frames)
            out = module(rows_first).reshape(batch, rows, channels, frames)
            refined.append(F.gelu(out))
        rows_after = [band.shape[2] for band in bands]
        skip = torch.cat(refined, dim=1).transpose(1, 2)  # (batch, channels, rows, frames)
        return self.globalconv(skip), skip, rows_after, original_rows


class FusionLayer(nn.Module):
    """x + skip, then a 3x3 conv on the channels duplicated (x, x) and a GLU over channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels * 2, channels * 2, 3, 1, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        # A conv over (x, x) equals a conv over x with the two input-channel halves of the kernel summed:
        # half the arithmetic, same parameters.
        weight = self.conv.weight[:, :channels] + self.conv.weight[:, channels:]
        return F.glu(F.conv2d(x + skip, weight, self.conv.bias, padding=1), dim=1)


class SparseUpsample(nn.Module):
    """Per band: ConvTranspose2d with kernel (k, 1) and stride (s, 1), trimmed symmetrically to the original rows."""

    def __init__(self, in_channels: int, out_channels: int, strides: Sequence[int], kernels: Sequence[int]) -> None:
        super().__init__()
        self.convtrs = nn.ModuleList(
            nn.ConvTranspose2d(in_channels, out_channels, (k, 1), (s, 1)) for k, s in zip(kernels, strides)
        )

    def forward(
        self,
        x: torch.Tensor,
        rows: Sequence[int],
        original_rows: Sequence[int],
        output_channels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        starts = (0, rows[0], rows[0] + rows[1])
        ends = (rows[0], rows[0] + rows[1], x.shape[2])
        outputs = []
        convtrs = cast("Iterable[nn.ConvTranspose2d]", self.convtrs)  # ModuleList items are typed as bare Modules
        for convtr, start, end, target in zip(convtrs, starts, ends, original_rows):
            weight, bias = convtr.weight, convtr.bias
            if output_channels is not None:  # compute only the requested stems' channels
                assert bias is not None  # the ConvTranspose2d layers are built with bias=True
                weight = weight.index_select(1, output_channels)
                bias = bias.index_select(0, output_channels)
            out = F.conv_transpose2d(x[:, :, start:end], weight, bias, stride=convtr.stride)
            offset = abs(target - out.shape[2]) // 2
            outputs.append(out[:, :, offset : offset + target])
        return torch.cat(outputs, dim=2)


class DualPathRNN(nn.Module):
    """Residual bidirectional LSTM across frequency, then across time; each preceded by GroupNorm(1)."""

    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        hidden = channels * expand
        self.lstm_layers = nn.ModuleList(
            nn.LSTM(channels, hidden, num_layers=1, bidirectional=True, batch_first=True) for _ in range(2)
        )
        self.linear_layers = nn.ModuleList(nn.Linear(hidden * 2, channels) for _ in range(2))
        self.norm_layers = nn.ModuleList(nn.GroupNorm(1, channels) for _ in range(2))

    def _path(self, index: int, x: torch.Tensor, order: tuple[int, int, int, int]) -> torch.Tensor:
        """Run path `index` over the axis placed third by `order` (a permutation of (batch, C, F, T))."""
        normed = self.norm_layers[index](x).permute(order)  # (batch, other axis, sequence axis, C)
        batch, other, length, channels = normed.shape
        out, _ = self.lstm_layers[index](normed.reshape(batch * other, length, channels))
        out = self.linear_layers[index](out).reshape(batch, other, length, channels)
        inverse = [order.index(axis) for axis in range(4)]
        return x + out.permute(inverse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._path(0, x, (0, 3, 2, 1))  # sequences over frequency, one per (batch, frame)
        return self._path(1, x, (0, 2, 3, 1))  # sequences over time, one per (batch, bin)


class SeparationNet(nn.Module):
    """Dual-path layers; after even layers go to the real FFT over time (re/im as channels), after odd ones back."""

    def __init__(self, channels: int, expand: int, num_layers: int) -> None:
        super().__init__()
        self.dp_modules = nn.ModuleList(DualPathRNN(channels * (2 if i % 2 else 1), expand) for i in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.dp_modules):
            x = layer(x)
            dtype = x.dtype
            # FFTs in fp32 (torch has no bf16 FFT on CPU), then back to the running dtype.
            if i % 2 == 0:
                spec = torch.fft.rfft(x.float(), dim=3, norm="ortho")
                x = torch.cat([spec.real, spec.imag], dim=1).to(dtype)
            else:
                real, imag = x.float().chunk(2, dim=1)
                x = torch.fft.irfft(torch.complex(real, imag), dim=3, norm="ortho").to(dtype)
        return x


class SCNet(nn.Module):
    """SCNet with MSST's parameter names and keyword arguments (see the module docstring)."""

    window: torch.Tensor

    def __init__(
        self,
        sources: Sequence[str] = ("drums", "bass", "other", "vocals"),
        audio_channels: int = 2,
        dims: Sequence[int] = (4, 32, 64, 128),
        nfft: int = 4096,
        hop_size: int = 1024,
        win_size: int = 4096,
        normalized: bool = True,
        band_SR: Sequence[float] = (0.175, 0.392, 0.433),
        band_stride: Sequence[int] = (1, 4, 16),
        band_kernel: Sequence[int] = (3, 4, 16),
        conv_depths: Sequence[int] = (3, 2, 1),
        compress: float = 4,
        conv_kernel: int = 3,
        num_dplayer: int = 6,
        expand: int = 1,
    ) -> None:
        super().__init__()
        self.sources = list(sources)
        self.audio_channels = audio_channels
        self.dims = list(dims)
        self.nfft = nfft
        self.hop_size = hop_size
        self.win_size = win_size
        self.normalized = bool(normalized)
        # Rectangular analysis/synthesis window: the reference calls stft/istft without one.
        self.register_buffer("window", torch.ones(win_size), persistent=False)

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in range(len(dims) - 1):
            self.encoder.append(
                SDblock(
                    dims[level], dims[level + 1], band_SR, band_stride, band_kernel, conv_depths, compress, conv_kernel
                )
            )
            out_channels = dims[level] * len(self.sources) if level == 0 else dims[level]
            # A Sequential only as a container: its indices 0/1 are the checkpoint keys; forward calls them itself.
            self.decoder.insert(
                0,
                nn.Sequential(
                    FusionLayer(dims[level + 1]),
                    SparseUpsample(dims[level + 1], out_channels, band_stride, band_kernel),
                ),
            )
        self.separation_net = SeparationNet(dims[-1], expand, num_dplayer)

    def _stft_args(self) -> dict[str, Any]:
        return dict(
            n_fft=self.nfft,
            hop_length=self.hop_size,
            win_length=self.win_size,
            window=self.window.float(),
            center=True,
            normalized=self.normalized,
        )

    def padding(self, samples: int) -> int:
        """Zeros appended so that the padded length is an odd number of hops (1 to 2 hops)."""
        pad = self.hop_size - samples % self.hop_size
        if (samples + pad) // self.hop_size % 2 == 0:
            pad += self.hop_size
        return pad

    def forward(self, mix: torch.Tensor, active_stem_ids: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """(batch, channels, samples) -> (batch, stems, channels, samples).

        `active_stem_ids` (as in the reference) computes only those sources, in that order.
        """
        if mix.dim() != 3 or mix.shape[1] != self.audio_channels:
            raise ValueError(f"expected (batch, {self.audio_channels}, samples), got {tuple(mix.shape)}")
        stems = self._stem_ids(active_stem_ids)
        batch, channels, samples = mix.shape
        dtype = cast(SDblock, self.encoder[0]).globalconv.weight.dtype
        pad = self.padding(samples)

        padded = F.pad(mix.float(), (0, pad)).reshape(batch * channels, samples + pad)
        spec = torch.view_as_real(torch.stft(padded, **self._stft_args(), return_complex=True))
        bins, frames = spec.shape[1], spec.shape[2]
        x = spec.permute(0, 3, 1, 2).reshape(batch, channels * 2, bins, frames).to(dtype)

        skips = []
        for level in self.encoder:
            x, skip, rows, original_rows = level(x)
            skips.append((skip, rows, original_rows))
        x = self.separation_net(x)

        output_channels = None
        if stems is not None:
            per_stem = self.dims[0]
            output_channels = torch.tensor([s * per_stem + f for s in stems for f in range(per_stem)], device=x.device)
        # Each decoder level is Sequential(FusionLayer, SparseUpsample); its items are typed as bare Modules.
        for index, (fusion, upsample) in enumerate(cast("Iterable[nn.Sequential]", self.decoder)):
            skip, rows, original_rows = skips.pop()
            x = fusion(x, skip)
            last = index == len(self.decoder) - 1
            x = upsample(x, rows, original_rows, output_channels if last else None)

        # Channels are (stem, audio channel, re/im); the inverse STFT gets one complex spectrogram per pair.
        x = x.float().reshape(-1, 2, bins, frames)
        audio = torch.istft(torch.complex(x[:, 0], x[:, 1]), **self._stft_args())
        n_stems = len(self.sources) if stems is None else len(stems)
        return audio.reshape(batch, n_stems, channels, -1)[..., :samples].to(mix.dtype)

    def _stem_ids(self, active_stem_ids: Sequence[int] | torch.Tensor | None) -> list[int] | None:
        if active_stem_ids is None:
            return None
        if isinstance(active_stem_ids, torch.Tensor):
            active_stem_ids = active_stem_ids.flatten().tolist()
        ids = [int(i) for i in active_stem_ids]
        if not ids or len(set(ids)) != len(ids) or any(i < 0 or i >= len(self.sources) for i in ids):
            raise ValueError(f"active_stem_ids must be distinct indices in [0, {len(self.sources)}), got {ids}")
        return ids


def _int_list(model: Any, key: str, default: Sequence[int], length: int | None = None, minimum: int = 1) -> list[int]:
    value = model.get(key, default)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
    ):
        raise ConfigError(f"model.{key} must be a list of integers >= {minimum}, got {value!r}")
    if length is not None and len(value) != length:
        raise ConfigError(f"model.{key} must have {length} entries ({', '.join(BAND_NAMES)}), got {len(value)}")
    return list(value)


def _positive_int(model: Any, key: str, default: int) -> int:
    value = model.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")
    return value


def from_config(config: Config) -> SCNet:
    """Build SCNet from `config.model` (MSST's keyword arguments; missing keys take the reference defaults,
    unknown keys are ignored)."""
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        raise ConfigError("the scnet config needs a 'model' section")

    sources = model.get("sources", ("drums", "bass", "other", "vocals"))
    if not isinstance(sources, Sequence) or isinstance(sources, str) or not sources:
        raise ConfigError(f"model.sources must be a non-empty list of stem names, got {sources!r}")
    audio_channels = _positive_int(model, "audio_channels", 2)
    dims = _int_list(model, "dims", (4, 32, 64, 128))
    if len(dims) < 2:
        raise ConfigError("model.dims needs at least two entries (input features and one encoder level)")
    if dims[0] != 2 * audio_channels:
        raise ConfigError(
            f"model.dims[0] must be 2 * audio_channels = {2 * audio_channels} "
            f"(real and imaginary part per channel), got {dims[0]}"
        )
    nfft = _positive_int(model, "nfft", 4096)
    hop_size = _positive_int(model, "hop_size", 1024)
    win_size = _positive_int(model, "win_size", 4096)
    if win_size > nfft:
        raise ConfigError(f"model.win_size {win_size} exceeds model.nfft {nfft}")

    band_sr = model.get("band_SR", (0.175, 0.392, 0.433))
    if (
        not isinstance(band_sr, Sequence)
        or isinstance(band_sr, str)
        or len(band_sr) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in band_sr)
    ):
        raise ConfigError(f"model.band_SR must be three positive fractions (low, mid, high), got {band_sr!r}")
    compress = model.get("compress", 4)
    if isinstance(compress, bool) or not isinstance(compress, (int, float)) or compress <= 0:
        raise ConfigError(f"model.compress must be a positive number, got {compress!r}")
    conv_kernel = _positive_int(model, "conv_kernel", 3)
    if conv_kernel % 2 == 0:
        raise ConfigError(f"model.conv_kernel must be odd, got {conv_kernel}")
    num_dplayer = _positive_int(model, "num_dplayer", 6)
    if num_dplayer % 2:
        # Odd counts would leave the separation network's output in the frequency domain of time.
        raise ConfigError(f"model.num_dplayer must be even, got {num_dplayer}")

    return SCNet(
        sources=[str(s) for s in sources],
        audio_channels=audio_channels,
        dims=dims,
        nfft=nfft,
        hop_size=hop_size,
        win_size=win_size,
        normalized=bool(model.get("normalized", True)),
        band_SR=[float(v) for v in band_sr],
        band_stride=_int_list(model, "band_stride", (1, 4, 16), 3),
        band_kernel=_int_list(model, "band_kernel", (3, 4, 16), 3),
        conv_depths=_int_list(model, "conv_depths", (3, 2, 1), 3, minimum=0),
        compress=compress,
        conv_kernel=conv_kernel,
        num_dplayer=num_dplayer,
        expand=_positive_int(model, "expand", 1),
    )
