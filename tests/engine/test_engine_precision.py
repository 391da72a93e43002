"""`auto` precision: bf16 on processors with bf16 matrix units, fp32 elsewhere; the roformers' band split stays
in fp32 inside a bf16 run (its inputs are raw spectrogram values)."""

from __future__ import annotations

import pydantic
import pytest
import torch

from openmvsep.engine.models.roformer import BSRoformer
from openmvsep.engine.precision import autocast_for, cpu_has_bf16_units, resolve
from openmvsep.settings import Settings

CPU = torch.device("cpu")


def test_auto_is_bf16_exactly_where_the_processor_has_bf16_units():
    flags = set()
    with open("/proc/cpuinfo") as info:  # the kernel's view, independent of torch's probe
        for line in info:
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
    assert cpu_has_bf16_units() == bool(flags & {"avx512_bf16", "amx_bf16"})
    units = "bf16" if cpu_has_bf16_units() else "fp32"
    assert resolve("auto", CPU) == units
    for family in ("bs_roformer", "mel_band_roformer", "htdemucs"):
        assert resolve("auto", CPU, family) == units
    for family in ("mdx23c", "scnet"):  # below 40 dB of fp32 in bf16: full precision
        assert resolve("auto", CPU, family) == "fp32"
    assert resolve("auto", torch.device("cuda")) == "fp32"  # GPUs: until measured on one
    assert resolve("fp32", CPU) == "fp32" and resolve("bf16", CPU) == "bf16"


def test_auto_runs_under_the_autocast_it_resolves_to():
    with autocast_for(CPU, "auto"):
        product = torch.ones(4, 4) @ torch.ones(4, 4)
    assert product.dtype == (torch.bfloat16 if cpu_has_bf16_units() else torch.float32)


def test_unknown_precisions_are_refused_by_the_engine_and_the_settings():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, fp16, bf16"):
        resolve("fp8", CPU)
    with pytest.raises(pydantic.ValidationError):
        Settings(precision="fp8")
    assert Settings().precision == "auto"


def test_the_band_split_runs_in_fp32_inside_a_bf16_run():
    torch.manual_seed(0)
    model = BSRoformer(
        dim=16, depth=1, heads=2, dim_head=8, time_transformer_depth=1, freq_transformer_depth=1, stereo=True,
        stft_n_fft=256, stft_hop_length=64, stft_win_length=256,
        freqs_per_bands=(4,) * 8 + (8,) * 4 + (16,) * 2 + (33,),
    ).eval()  # fmt: skip
    features = torch.randn(2 * 2 * 129 + 1, 40) * 30  # spectrogram-sized values
    features[-1] = 0  # the padding row the model appends
    with torch.inference_mode():
        full = model.band_split(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside_bf16 = model.band_split(features)
    assert inside_bf16.dtype == torch.float32
    assert torch.equal(inside_bf16, full)  # not merely close: the same fp32 computation
