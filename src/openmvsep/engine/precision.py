"""The number format models run in: fp32, fp16 or bf16 through autocast, or `auto`.

`auto` is bf16 on processors with bf16 matrix units (AVX-512 BF16 or AMX), where oneDNN runs bf16 matrix
products several times faster than fp32 ones (a 2048² product: 7× on this project's build machines), for the
model families whose bf16 output stays within 40 dB SNR of their fp32 output at full size (bench/engine.py);
fp32 everywhere else, GPUs included until their figures are measured. Autocast keeps the weights in fp32 and
accumulates in fp32; the few layers that need fp32 inputs to stay within that bound (the roformers' band split,
which reads raw spectrogram values) opt out themselves (`full_precision`).

Measured on full-size configs with random weights, bf16 against fp32 on a 4 s input (CPU with AMX, 2 cores):
HTDemucs 2.9× faster at 48 dB; BS-RoFormer 2.0× at 42.6 dB with the band split in fp32 (36.5 dB without);
MDX23C 1.4× at 33 dB (fp32 residuals did not help: its U-Net rounds every layer's input) and SCNet 1.4× at
27 dB, so those two stay fp32 under `auto` until that is solved.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import cache

import torch

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CHOICES = ("auto", *PRECISIONS)
# Families whose bf16 output is within 40 dB SNR of their fp32 output (see above): the ones `auto` runs in bf16.
AUTO_BF16_FAMILIES = frozenset({"bs_roformer", "mel_band_roformer", "htdemucs"})


@cache
def cpu_has_bf16_units() -> bool:
    # torch's own probes of the processor (cpuinfo), the ones its oneDNN kernels dispatch on
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve(precision: str, device: torch.device, family: str | None = None) -> str:
    """The concrete precision (`fp32`, `fp16` or `bf16`) that `precision` means for a model `family` on `device`
    (no family: for any model that tolerates bf16)."""
    if precision not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}")
    if precision != "auto":
        return precision
    tolerates_bf16 = family is None or family in AUTO_BF16_FAMILIES
    return "bf16" if tolerates_bf16 and device.type == "cpu" and cpu_has_bf16_units() else "fp32"


def autocast_for(device: torch.device, precision: str):
    """fp16/bf16 through autocast (weights stay fp32, so STFTs and norms keep their precision)."""
    concrete = resolve(precision, device)
    if concrete == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[concrete])


def full_precision(device: torch.device):
    """A block that runs in fp32 inside a reduced-precision run."""
    return torch.autocast(device_type=device.type, enabled=False)
