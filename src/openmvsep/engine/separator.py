"""One loaded model and how to separate audio with it: the engine's entry point.

`load_model` builds the family from its config and loads a checkpoint; `separate` runs the chunked
overlap-add (or demucs' split for the demucs families) with the model's own settings, and adds what the
reference's inference script adds around it: track normalisation when the config asks for it, test-time
augmentation, mono handling, and the residual (mix − target) for single-target models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from openmvsep.engine.checkpoints import apply_state_dict, load_state_dict
from openmvsep.engine.config import Config, ConfigError, load_config
from openmvsep.engine.demix import ChunkPlan, demix
from openmvsep.engine.models import build_model
from openmvsep.engine.precision import autocast_for, resolve

if TYPE_CHECKING:  # demucs is imported only where an htdemucs model runs
    from demucs.apply import BagOfModels
    from demucs.apply import Model as DemucsModel

RESIDUAL = "instrumental"  # the reference inference script's name for mix − target
AUTO_GPU_BATCH = 4  # chunks per model call on a GPU when the caller leaves the batch size to us (0)
# Families that run through demucs' split (engine.demucs_apply: segments padded with real context to the model's
# `valid_length`, centre-trimmed, triangle-weighted) rather than the chunked overlap-add of engine.demix.
DEMUCS_SPLIT = ("htdemucs", "demucs_v2")


@dataclass
class LoadedModel:
    model_type: str
    config: Config
    model: torch.nn.Module
    device: torch.device
    stems: list[str] = field(default_factory=list)  # what one forward returns, in order
    target: str | None = None

    @property
    def sample_rate(self) -> int:
        audio = self.config.get("audio") or {}
        training = self.config.get("training") or {}
        return int(audio.get("sample_rate") or training.get("samplerate") or 44100)

    @property
    def channels(self) -> int:
        """Channels one forward takes: 1 for `stereo: false` models (each channel runs as its own item)."""
        model_cfg = self.config.get("model")
        if isinstance(model_cfg, dict) and model_cfg.get("stereo") is False:
            return 1
        return 2


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(
    model_type: str,
    config: Config | str | Path,
    checkpoint: str | Path | dict | None = None,
    *,
    sha256: str | None = None,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    compile: bool | str = False,
) -> LoadedModel:
    """A model with its weights on its device.

    `compile` wraps it in torch.compile (slow first call, faster after); a string names the backend
    (default: inductor).
    """
    if not isinstance(config, Config):
        config = load_config(config)
    training = config.get("training")
    if not isinstance(training, dict) or not training.get("instruments"):
        raise ConfigError("the config has no training.instruments: the model's stems are unknown")
    model = build_model(model_type, config)
    if checkpoint is not None:
        tensors = (
            checkpoint
            if isinstance(checkpoint, dict)
            else load_state_dict(checkpoint, sha256=sha256, cache_dir=cache_dir)
        )
        apply_state_dict(model, tensors, Path(str(checkpoint)).name if not isinstance(checkpoint, dict) else "state")
    dev = resolve_device(device)
    model.to(dev).eval()
    target = training.get("target_instrument") or None
    instruments = list(training["instruments"])
    if target and target not in instruments:
        raise ConfigError(f"training.target_instrument {target!r} is not one of training.instruments {instruments}")
    stems = [target] if target else instruments
    if compile:
        # attribute lookups (mask_estimators) pass through the wrapper to the module
        # torch.compile of a module returns an OptimizedModule (an nn.Module); its stub says only "callable"
        model = cast(torch.nn.Module, torch.compile(model, backend=compile if isinstance(compile, str) else "inductor"))
    return LoadedModel(
        model_type=training.get("model_type") or model_type,
        config=config,
        model=model,
        device=dev,
        stems=stems,
        target=target,
    )


def load_demucs(path: str | Path, *, sha256: str | None = None, device: str | None = None) -> LoadedModel:
    """A demucs package (the official `.th`, or demucs' safetensors layout) with its own sources and rate.

    A pickled `.th` is trusted only when its sha256 matches the pin; safetensors need no pin.
    """
    return _demucs_loaded(_demucs_package(Path(path), sha256), device)


def load_demucs_bag(
    bag: str | Path, members: Mapping[str, tuple[Path, str | None]], *, device: str | None = None
) -> LoadedModel:
    """A demucs bag YAML (`models:` signatures, `weights:`, `segment:`) whose members are the files in `members`
    (signature -> (path, pinned sha256)); each stem is the weighted mean of the members' estimates of it."""
    from openmvsep.engine.checkpoints import CheckpointError
    from openmvsep.engine.models.htdemucs import DemucsLoadError, load_bag

    def resolve(signature: str):
        if signature not in members:
            raise CheckpointError(f"the bag {Path(bag).name} names model {signature}, which it has no file for")
        path, sha256 = members[signature]
        return _demucs_package(path, sha256)

    try:
        model = load_bag(bag, resolve)
    except DemucsLoadError as e:
        raise CheckpointError(f"{Path(bag).name}: {e}") from None
    return _demucs_loaded(model, device)


def _demucs_package(path: Path, sha256: str | None):
    from openmvsep.engine.checkpoints import CheckpointError
    from openmvsep.engine.models.htdemucs import DemucsLoadError, load_demucs_package
    from openmvsep.engine.weights import sha256_file

    trusted = bool(sha256 and sha256_file(path) == sha256.lower())
    try:
        return load_demucs_package(path, trusted=trusted)
    except DemucsLoadError as e:
        raise CheckpointError(f"{path.name}: {e}") from None


def _demucs_loaded(model: DemucsModel | BagOfModels, device: str | None) -> LoadedModel:
    """A demucs model or bag with the config the separator reads (its own sources and rate)."""
    sources = list(model.sources)
    config = Config.wrap(
        {
            "training": {
                "instruments": sources,
                "samplerate": int(model.samplerate),
                "channels": int(model.audio_channels),
            },
            "audio": {"sample_rate": int(model.samplerate)},
            "inference": {"overlap": 0.25},
        }
    )
    dev = resolve_device(device)
    model.to(dev).eval()
    return LoadedModel(model_type="htdemucs", config=config, model=model, device=dev, stems=sources)


def _forward(loaded: LoadedModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model call for a batch of chunks, selecting the target head when the model can run it alone."""
    model = loaded.model
    instruments = list(loaded.config.training.instruments)
    heads = getattr(model, "mask_estimators", None)
    if loaded.target and heads is not None and len(heads) == len(instruments):
        index = instruments.index(loaded.target)
        return lambda batch: model(batch, active_stem_ids=[index])
    if loaded.target:
        index = instruments.index(loaded.target)

        def select(batch: torch.Tensor) -> torch.Tensor:
            out = model(batch)
            if out.dim() == 4 and out.shape[1] == len(instruments):
                out = out[:, index : index + 1]
            return out

        return select
    return model


def _batch_size(loaded: LoadedModel, asked: int) -> int:
    """The caller's batch size, or for 0 ours: one chunk at a time on CPU, where a chunk already fills the cores
    and bigger batches were slower per chunk (2 cores: Mel-RoFormer 19.5 s vs 25 s at 4, MDX23C 13.4 s vs 18.4 s,
    HTDemucs on 20 s 14.7 s vs 17.1 s) while holding that many times the activations (demucs v2 too: its segments
    are 40 s); a few on a GPU. The output does not depend on it (see demix)."""
    if asked > 0:
        return asked
    return 1 if loaded.device.type == "cpu" else AUTO_GPU_BATCH


def _separate_once(
    loaded: LoadedModel,
    mix: torch.Tensor,
    *,
    batch_size: int,
    precision: str,
    num_overlap: int | None,
    progress: Callable[[int, int], None] | None,
) -> torch.Tensor:
    """(stems, channels, samples) for a (channels, samples) mix already on the device."""
    batch_size = _batch_size(loaded, batch_size)
    if loaded.model_type in DEMUCS_SPLIT:
        from openmvsep.engine.demucs_apply import apply as demucs_apply

        inference = loaded.config.get("inference") or {}
        with autocast_for(loaded.device, precision):
            return demucs_apply(
                # demucs models (models.htdemucs.from_config, load_demucs), or models.demucs_v2's, which has the
                # same interface (sources, audio_channels, samplerate, segment, valid_length)
                cast("DemucsModel", loaded.model),
                mix,
                overlap=float(inference.get("overlap", 0.25)),
                batch_size=batch_size,
                device=loaded.device,
                progress=progress,
            ).float()
    audio = loaded.config.get("audio") or {}
    inference = loaded.config.get("inference") or {}
    chunk = int(inference.get("chunk_size") or audio.get("chunk_size") or 0)
    if chunk <= 0:
        raise ConfigError("the config has no audio.chunk_size")
    plan = ChunkPlan(chunk, int(num_overlap or inference.get("num_overlap") or 2))
    run = _forward(loaded)
    if loaded.channels == 1 and mix.shape[0] != 1:
        # A mono model separates each channel on its own; channels ride along as separate tracks.
        outs = [
            demix(
                run,
                mix[c : c + 1],
                plan,
                num_stems=len(loaded.stems),
                batch_size=batch_size,
                precision=precision,
                progress=progress,
            )
            for c in range(mix.shape[0])
        ]
        return torch.cat(outs, dim=1)
    return demix(
        run, mix, plan, num_stems=len(loaded.stems), batch_size=batch_size, precision=precision, progress=progress
    )


def separate(
    loaded: LoadedModel,
    mix: np.ndarray,
    *,
    batch_size: int = 0,
    precision: str = "fp32",
    num_overlap: int | None = None,
    tta: bool = False,
    residual: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Stems of `mix` (channels, samples) at the model's rate, as float32 arrays of the mix's shape."""
    mix = np.asarray(mix, dtype=np.float32)
    if mix.ndim == 1:
        mix = mix[None]
    precision = resolve(precision, loaded.device, loaded.model_type)
    original = mix
    was_mono = mix.shape[0] == 1 and loaded.channels == 2
    if was_mono:
        mix = np.repeat(mix, 2, axis=0)
    inference = loaded.config.get("inference") or {}
    mean = std = None
    if inference.get("normalize"):
        mono = mix.mean(axis=0)
        mean, std = float(mono.mean()), float(mono.std())
        mix = (mix - mean) / (std if std > 0 else 1.0)
    x = torch.from_numpy(np.ascontiguousarray(mix)).to(loaded.device)

    def once(signal: torch.Tensor) -> torch.Tensor:
        return _separate_once(
            loaded, signal, batch_size=batch_size, precision=precision, num_overlap=num_overlap, progress=progress
        )

    out = once(x)
    if tta:  # channel swap and polarity inversion, each undone on the output, averaged with the plain pass
        passes = [out]
        if x.shape[0] == 2:
            passes.append(once(x.flip(0)).flip(1))
        passes.append(-once(-x))
        out = torch.stack(passes).mean(0)
    result = out.cpu().numpy()
    if mean is not None and std is not None:  # set together
        result = result * (std if std > 0 else 1.0) + mean
    if was_mono:
        result = result[:, :1]
    stems = {name: result[i] for i, name in enumerate(loaded.stems)}
    if residual and loaded.target:
        stems[RESIDUAL] = original - stems[loaded.target]
    return stems
