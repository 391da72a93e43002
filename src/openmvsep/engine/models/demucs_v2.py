"""Demucs v2 (demucs 2.0.x, 2021): the waveform U-Net with a BiLSTM that MVSep lists as "Demucs2" (sep_type 13).

demucs 2.0.3 publishes `demucs`, `demucs_extra` and `demucs48_hq` as bare state dicts (`torch.save` of
`model.state_dict()`, named `<name>-<first 8 hex digits of the file's sha256>.th`); the architecture is not in the
file but in demucs 2.x's code, which built every one of them with its defaults and only `channels` changed (64, or
48 for demucs48_hq). `from_config` reads those arguments from a config (`demucs_v2:` section).

Why this module and not demucs 4's `demucs.demucs.Demucs`: demucs 4's class can hold these tensors (with
`context=1` its decoder convolution has v2's kernel of 3, and its `load_state_dict` renames v2's keys), but it
computes something else. Its decoder convolution is zero-padded (kernel 2c+1, padding c) so that every level keeps
its length, whereas v2's (kernel `context`, no padding) shortens the signal by `context - 1` frames per level and
each skip connection is centre-trimmed to the shorter signal. Its `valid_length` lacks v2's context frames, so
demucs' split gives it shorter inputs and the bottleneck's BiLSTM sees other sequences; and even on v2's input
lengths its padding changes about 150 samples at each end of the output, which for many lengths lie inside the part
the split keeps. Only with `context=1` do the two coincide, which the tests use as an oracle. The code here is
written from the architecture; nothing is taken from demucs.

Data flow of `forward` for input (batch, channels, samples), samples = `valid_length(n)` for the n wanted:

1. With `normalize` (off in the published models, whose CLI normalises the whole track instead), the input is
   normalised by the mean and std of its mono mixdown.
2. With `resample`, it is upsampled by 2 (julius' windowed-sinc resampler, as demucs uses).
3. Encoder, `depth` levels: Conv1d(kernel_size, stride) + ReLU, then with `rewrite` a 1x1 Conv1d to twice the
   channels + GLU (to the same channels + ReLU without `glu`). Channels start at `channels` and grow by `growth`.
4. A bidirectional LSTM (`lstm_layers`, hidden size = channels) over time at the bottleneck, projected back by a
   linear layer.
5. Decoder, deepest level first: the encoder's output of that level, centre-trimmed to the current length (the
   extra sample of an odd difference comes off the end), is added; with `rewrite` a Conv1d of kernel `context`
   (no padding) to twice the channels + GLU; a ConvTranspose1d(kernel_size, stride) to the level's input channels
   (sources x audio channels for the last), ReLU except for the last.
6. Downsampled by 2 again, the normalisation undone, reshaped to (batch, sources, channels, time).

The output is longer than n (it is centre-trimmed to n by the caller, `demucs_apply`); `valid_length(n)` is the
shortest input length for which no convolution leaves samples over and the output still covers n samples.
Parameter names (the Sequential indices included) are v2's, so its state dicts load with `strict=True`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import julius
import torch
from torch import nn

from openmvsep.engine.config import Config, ConfigError

__all__ = ["DemucsV2", "from_config"]


class BLSTM(nn.Module):
    """Bidirectional LSTM over the time axis of (batch, channels, time), projected back to `dim` channels."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence = x.permute(2, 0, 1)  # (time, batch, channels): nn.LSTM's default layout
        out = self.linear(self.lstm(sequence)[0])
        return out.permute(1, 2, 0)


def centre_trim(x: torch.Tensor, length: int) -> torch.Tensor:
    """The middle `length` samples of the last axis; of an odd surplus the extra sample comes off the end."""
    surplus = x.shape[-1] - length
    if surplus < 0:
        raise ValueError(f"cannot trim {x.shape[-1]} samples to {length}")
    start = surplus // 2
    return x[..., start : start + length]


class DemucsV2(nn.Module):
    """demucs 2.x's `Demucs` (defaults as there). `segment` is in seconds (v2 stores it as `segment_length` in
    samples: 40 s at 44.1 kHz), the length demucs' split evaluates the model on."""

    def __init__(
        self,
        sources: list[str],
        audio_channels: int = 2,
        channels: int = 64,
        depth: int = 6,
        rewrite: bool = True,
        glu: bool = True,
        resample: bool = True,
        kernel_size: int = 8,
        stride: int = 4,
        growth: float = 2.0,
        lstm_layers: int = 2,
        context: int = 3,
        normalize: bool = False,
        samplerate: int = 44100,
        segment: float | Fraction = 40,
    ) -> None:
        super().__init__()
        if depth < 1 or channels < 1 or kernel_size < 1 or stride < 1 or context < 1:
            raise ValueError("depth, channels, kernel_size, stride and context must be positive")
        self.sources = list(sources)
        self.audio_channels = audio_channels
        self.depth = depth
        self.kernel_size = kernel_size
        self.stride = stride
        self.context = context
        self.resample = resample
        self.normalize = normalize
        self.samplerate = samplerate
        self.segment = segment

        widen = 2 if glu else 1  # a GLU halves its input's channels

        def gate() -> nn.Module:
            return nn.GLU(dim=1) if glu else nn.ReLU()

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        inputs, width = audio_channels, channels
        for level in range(depth):
            encode: list[nn.Module] = [nn.Conv1d(inputs, width, kernel_size, stride), nn.ReLU()]
            if rewrite:
                encode += [nn.Conv1d(width, widen * width, 1), gate()]
            self.encoder.append(nn.Sequential(*encode))

            outputs = len(self.sources) * audio_channels if level == 0 else inputs
            decode: list[nn.Module] = []
            if rewrite:
                decode += [nn.Conv1d(width, widen * width, context), gate()]
            decode.append(nn.ConvTranspose1d(width, outputs, kernel_size, stride))
            if level > 0:
                decode.append(nn.ReLU())
            self.decoder.insert(0, nn.Sequential(*decode))  # the decoder runs deepest level first
            inputs, width = width, int(growth * width)
        self.lstm = BLSTM(inputs, lstm_layers) if lstm_layers else None

    def valid_length(self, length: int) -> int:
        """The input length to give the model so that its output covers `length` samples (see the module doc)."""
        if self.resample:
            length *= 2
        for _ in range(self.depth):
            length = max(1, math.ceil((length - self.kernel_size) / self.stride) + 1)  # frames the encoder makes
            length += self.context - 1  # the frames the decoder's context convolution consumes at this level
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel_size  # back through a strided convolution
        if self.resample:
            length = math.ceil(length / 2)
        return int(length)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            mono = mix.mean(dim=1, keepdim=True)
            mean, std = mono.mean(dim=-1, keepdim=True), mono.std(dim=-1, keepdim=True)
            x = (mix - mean) / (1e-5 + std)
        else:
            x = mix
        if self.resample:
            x = julius.resample_frac(x, 1, 2)
        skips = []
        for encode in self.encoder:
            x = encode(x)
            skips.append(x)
        if self.lstm is not None:
            x = self.lstm(x)
        for decode in self.decoder:
            x = decode(x + centre_trim(skips.pop(), x.shape[-1]))
        if self.resample:
            x = julius.resample_frac(x, 2, 1)
        if self.normalize:
            x = x * std + mean
        return x.view(x.shape[0], len(self.sources), self.audio_channels, x.shape[-1])


# The `demucs_v2:` keys a config may set (the constructor's; sources, channels of audio, rate and segment come from
# `training`, as for every family).
_ARCHITECTURE = (
    "channels",
    "depth",
    "rewrite",
    "glu",
    "resample",
    "kernel_size",
    "stride",
    "growth",
    "lstm_layers",
    "context",
    "normalize",
)


def from_config(config: Config) -> DemucsV2:
    """A DemucsV2 from `training.instruments/channels/samplerate/segment` and the `demucs_v2:` section."""
    training = config.get("training")
    if not isinstance(training, Mapping):
        raise ConfigError("config section 'training' is missing (instruments, samplerate, segment, channels)")
    section = config.get("demucs_v2") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("config section 'demucs_v2' must be a mapping")
    unknown = sorted(set(section) - set(_ARCHITECTURE))
    if unknown:
        raise ConfigError(f"demucs_v2 has no argument {unknown}; it takes {list(_ARCHITECTURE)}")
    instruments = training.get("instruments")
    if not isinstance(instruments, list) or not instruments or not all(isinstance(i, str) for i in instruments):
        raise ConfigError(f"training.instruments must be a non-empty list of names, got {instruments!r}")
    kwargs: dict[str, Any] = {
        "audio_channels": _positive(training, "channels", 2),
        "samplerate": _positive(training, "samplerate", 44100),
        "segment": _positive(training, "segment", 40),
    }
    try:
        return DemucsV2(list(instruments), **kwargs, **dict(section)).eval()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config section 'demucs_v2' does not describe a valid DemucsV2: {e}") from None


def _positive(training: Mapping, key: str, default: int) -> Any:
    value = training.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"training.{key} must be a positive number, got {value!r}")
    return value
