"""Model families by the reference implementation's `model_type` names."""

from __future__ import annotations

from importlib import import_module

import torch

from openmvsep.engine.config import Config, ConfigError

# model_type -> "module:function" building the module from a config (imported on first use)
FAMILIES = {
    "bs_roformer": "openmvsep.engine.models.roformer:bs_roformer_from_config",
    "mel_band_roformer": "openmvsep.engine.models.roformer:mel_band_roformer_from_config",
    "mdx23c": "openmvsep.engine.models.mdx23c:from_config",
    "scnet": "openmvsep.engine.models.scnet:from_config",
    "htdemucs": "openmvsep.engine.models.htdemucs:from_config",
    "demucs_v2": "openmvsep.engine.models.demucs_v2:from_config",  # demucs 2.x's waveform Demucs (sep_type 13)
}


def build_model(model_type: str, config: Config) -> torch.nn.Module:
    """A fresh (random-weight) model of the family, shaped by the config."""
    training = config.get("training") or {}
    model_type = training.get("model_type") or model_type  # the config's own word wins, as in the reference
    target = FAMILIES.get(model_type)
    if target is None:
        raise ConfigError(f"unknown model type {model_type!r}; this build has: {', '.join(sorted(FAMILIES))}")
    module, function = target.split(":")
    return getattr(import_module(module), function)(config)
