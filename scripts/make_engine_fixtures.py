"""Generate the engine's equality fixtures with the reference implementation (run in the oracle venv).

    bash scripts/oracle-env.sh                                  # once: .oracle/ with msst 0.1.0
    .oracle/bin/python scripts/make_engine_fixtures.py          # writes tests/fixtures/engine/<name>/

For each family, a public config from ../shared/reference/msst-configs is shrunk (dims, depth, chunk size)
so that CPU tests stay fast, the reference builds its model from it with a fixed seed (weights perturbed so
that no norm gain is exactly 1), and the reference `demix` (batch size 1, fp32) separates four inputs: noise
shorter than one chunk, a chirp of exactly one chunk, silence of 2.5 chunks, and noise whose length is not a
multiple of the step. Written per fixture: config.yaml, weights.safetensors, cases.npz (inputs and outputs).
The fixtures are our own random weights and synthesised audio.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT.parent / "shared" / "reference" / "msst-configs"
OUT = ROOT / "tests" / "fixtures" / "engine"
RATE = 44100

# name: (model_type, public config, overrides applied to the parsed YAML)
FIXTURES = {
    "bs_roformer": (
        "bs_roformer",
        "model_bs_roformer_ep_317_sdr_12.9755.yaml",
        {
            "model": {
                "dim": 32,
                "depth": 1,
                "heads": 2,
                "dim_head": 16,
                "flash_attn": False,
                "mlp_expansion_factor": 1,
            },
            "audio": {"chunk_size": 11025},
            "inference": {"num_overlap": 2},
        },
    ),
    "bs_roformer_variants": (
        "bs_roformer",
        "model_bs_roformer_ep_317_sdr_12.9755.yaml",
        {
            "model": {
                "dim": 16,
                "depth": 2,
                "heads": 2,
                "dim_head": 8,
                "flash_attn": False,
                "linear_transformer_depth": 1,
                "skip_connection": True,
                "mask_estimator_depth": 1,
                "zero_dc": False,
            },
            "audio": {"chunk_size": 11025},
            "inference": {"num_overlap": 4},
        },
    ),
    "mel_band_roformer": (
        "mel_band_roformer",
        "config_vocals_mel_band_roformer_kj.yaml",
        {
            "model": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "flash_attn": False, "mlp_expansion_factor": 1},
            "audio": {"chunk_size": 11025},
            "inference": {"num_overlap": 2},
        },
    ),
    "mdx23c": (
        "mdx23c",
        "config_vocals_mdx23c.yaml",
        {
            "model": {
                "num_channels": 8,
                "growth": 4,
                "num_scales": 2,
                "num_blocks_per_scale": 1,
                "bottleneck_factor": 2,
            },
            "audio": {"chunk_size": 512 * 15, "dim_t": 16, "n_fft": 2048, "hop_length": 512, "dim_f": 512},
            "inference": {"num_overlap": 4, "dim_t": 16},
        },
    ),
    "scnet": (
        "scnet",
        "config_musdb18_scnet.yaml",
        {
            "model": {"dims": [4, 8, 8, 16], "num_dplayer": 2},
            # normalize off: the reference's demix does not normalise (its inference script does, around demix)
            "audio": {"chunk_size": 1024 * 10},
            "inference": {"num_overlap": 4, "normalize": False},
        },
    ),
}


def merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def cases(chunk: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    chirp_t = np.arange(chunk) / RATE
    sweep = np.sin(2 * np.pi * (50 * chirp_t + (15000 - 50) / (2 * chirp_t[-1]) * chirp_t**2))
    # A floor of low noise under the sweep: bands the sweep has not reached would otherwise hold only rounding
    # noise, which the RoFormers' per-band RMS norms blow up, so the output would depend on the CPU's rounding
    # (a 1e-6 change of the input moved it to 26 dB SNR; with the floor it stays above 100 dB).
    floor = 0.01 * np.random.default_rng(11).standard_normal((2, chunk))
    odd = 2 * chunk + chunk // 3 + 17
    return {
        "noise_short": (0.5 * rng.standard_normal((2, int(chunk * 0.4)))).astype(np.float32),
        "chirp_one_chunk": (np.stack([0.5 * sweep, 0.3 * sweep]) + floor).astype(np.float32),
        "silence_long": np.zeros((2, int(chunk * 2.5)), np.float32),
        "noise_odd": (0.3 * rng.standard_normal((2, odd))).astype(np.float32),
    }


def build(name: str, model_type: str, config_file: str, overrides: dict) -> None:
    from msst.utils.model_utils import demix
    from msst.utils.settings import get_model_from_config

    raw = yaml.load((CONFIGS / config_file).read_text(), Loader=yaml.FullLoader)
    config_data = merge(raw, overrides)
    config_data["inference"]["batch_size"] = 1
    config_data["training"]["use_amp"] = False
    target = OUT / name
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.yaml").write_text(
        f"# {name}: shrunk from {config_file} for CPU tests (scripts/make_engine_fixtures.py)\n"
        + yaml.dump(config_data, sort_keys=False)
    )
    torch.manual_seed(1234)
    model, config = get_model_from_config(model_type, str(target / "config.yaml"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        # Weights are stored in fp16 to keep the fixtures small, so the reference runs on fp16-representable
        # values too. Rotary frequency tables are derived, not learned: they keep full precision.
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not key.endswith("freqs"):
                tensor.copy_(tensor.half().float())
    model.eval()
    state = {
        k: (v.half() if v.is_floating_point() and not k.endswith("freqs") else v).detach().contiguous().clone()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(target / "weights.safetensors"))
    chunk = config_data["audio"]["chunk_size"]
    arrays = {}
    for case, mix in cases(chunk).items():
        out = demix(config, model, mix, torch.device("cpu"), model_type)
        if not isinstance(out, dict):
            out = {config.training.instruments[0]: out}
        arrays[f"input__{case}"] = mix
        for stem, data in out.items():
            arrays[f"output__{case}__{stem}"] = np.asarray(data, dtype=np.float32)
        print(f"{name}/{case}: {mix.shape[1]} samples -> {sorted(out)}")
    np.savez_compressed(target / "cases.npz", **arrays)


def main(names: list[str]) -> None:
    for name in names or FIXTURES:
        build(name, *FIXTURES[name])


if __name__ == "__main__":
    main(sys.argv[1:])
