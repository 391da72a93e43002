"""Transkun 2.0 (a piano transcriber: a transformer scoring note intervals, decoded by a semi-CRF) run from the
checkpoint and configuration its `transkun` wheel ships (`transkun/pretrained/2.0.pt`, `2.0.conf`).

The model class is the package's own, `transkun.ModelTransformer.TransKun`: the network and its decoder are
too large to re-implement faithfully. Its module imports `pretty_midi` and `mir_eval` (both small, installed
with it); the package's other declared dependencies (tensorboard, matplotlib, seaborn, ...) are for training
and are not installed (`make install` adds transkun with --no-deps). Building the model asks torchaudio for a
mel filterbank; torchaudio has no wheel for the torch we use, and that filterbank is a buffer the checkpoint
carries, so where torchaudio is missing the model is built with a placeholder of the right shape, which the
strict state-dict load then overwrites.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from openmvsep.engine.transcription.notes import MissingRuntime, Note

WEIGHTS_IN_WHEEL = ("pretrained", "2.0.pt")
CONFIG_IN_WHEEL = ("pretrained", "2.0.conf")
SAMPLE_RATE = 44100  # the shipped configuration's `fs`
FIX = "pip install --no-deps transkun==2.0.1 && pip install pretty-midi mir-eval (`make install` does both)"


def model_files() -> tuple[Path, Path] | None:
    """(checkpoint, configuration) of the installed `transkun` wheel, or None when it is not installed."""
    spec = importlib.util.find_spec("transkun")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    weights, config = root.joinpath(*WEIGHTS_IN_WHEEL), root.joinpath(*CONFIG_IN_WHEEL)
    return (weights, config) if weights.is_file() and config.is_file() else None


def _mel_placeholder() -> types.ModuleType:
    """A stand-in `torchaudio` offering only `functional.melscale_fbanks`, with zeros of the right shape."""
    import torch

    def melscale_fbanks(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int, *_a, **_k):
        return torch.zeros(n_freqs, n_mels)

    module = types.ModuleType("torchaudio")
    module.functional = types.SimpleNamespace(melscale_fbanks=melscale_fbanks)  # type: ignore[attr-defined]
    return module


class Transkun:
    def __init__(self, weights: Path, config: Path, *, device: str | None = None, hop_seconds: float | None = None):
        import torch

        from openmvsep.engine.separator import resolve_device

        try:
            from transkun.ModelTransformer import TransKun
        except ImportError as e:
            raise MissingRuntime(f"Transkun cannot be imported ({e}): {FIX}") from e
        conf = TransKun.Config()
        conf.__dict__.update(json.loads(config.read_text())["Model"]["config"])
        stand_in = {} if importlib.util.find_spec("torchaudio") else {"torchaudio": _mel_placeholder()}
        with mock.patch.dict(sys.modules, stand_in):
            model = TransKun(conf=conf)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("best_state_dict", state.get("state_dict", state)), strict=True)
        self.device = resolve_device(device)
        self.model: Any = model.to(self.device).eval()
        self.segment_seconds = float(conf.segmentSizeInSecond)
        # a step longer than a window would skip audio
        self.hop_seconds = min(self.segment_seconds, float(hop_seconds or conf.segmentHopSizeInSecond))

    def transcribe(self, audio: np.ndarray) -> list[Note]:
        """Notes of (channels, frames) audio at SAMPLE_RATE."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(audio.T, dtype=np.float32)).to(self.device)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # its activation checkpointing warns outside training
            found = self.model.transcribe(x, stepInSecond=self.hop_seconds, segmentSizeInSecond=self.segment_seconds)
        return [
            Note(float(n.start), float(n.end), int(n.pitch), int(n.velocity))
            for n in found
            if n.pitch >= 0 and n.end > n.start  # its pedal events carry negative pitches
        ]
