"""Checkpoint files: .safetensors, and pickled .ckpt/.pth/.th/.pt/.bin (only when their sha256 is pinned).

A pickle can run arbitrary code when loaded, so a pickled file is opened only after its sha256 matches a
hash the caller pinned (from the weights registry, or given explicitly). Its tensors are then written to a
safetensors cache keyed by that hash, so later loads never unpickle again.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from openmvsep.engine.weights import sha256_file

PICKLE_SUFFIXES = (".ckpt", ".pth", ".th", ".pt", ".bin", ".chpt")
WRAPPER_KEYS = ("state", "state_dict", "model_state_dict")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, looking inside the reference's wrapper keys."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path.name} holds no state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path.name} holds no tensors")
    return tensors


def load_state_dict(
    path: str | Path, *, sha256: str | None = None, cache_dir: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file. Pickled formats need `sha256` (the file must match it)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f"{path.name} is not a readable safetensors file (corrupt or truncated?): {e}"
            ) from None
    if path.suffix not in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path.name}: unknown checkpoint format (expected .safetensors or {', '.join(PICKLE_SUFFIXES)})"
        )
    if not sha256:
        raise CheckpointError(
            f"{path.name} is a pickled checkpoint, which can run code when loaded; it is only loaded when its "
            "sha256 is pinned (in the weights registry, or given with --sha256)"
        )
    cached = Path(cache_dir) / f"{sha256.lower()}.safetensors" if cache_dir else None
    if cached is not None and cached.is_file():
        try:
            return load_file(str(cached))
        except (SafetensorError, OSError, ValueError):
            cached.unlink(missing_ok=True)  # a broken cache entry is rebuilt below
    actual = sha256_file(path)
    if actual != sha256.lower():
        raise CheckpointError(
            f"{path.name} does not match its pinned sha256 (expected {sha256.lower()}, "
            f"got {actual}); the file is corrupt, truncated or not the pinned one"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)  # noqa: S614 - hash pinned above
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError, ModuleNotFoundError) as e:
        raise CheckpointError(
            f"{path.name} could not be read (corrupt or truncated?): {type(e).__name__}: {e}"
        ) from None
    tensors = unwrap_state_dict(obj, path)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".part")
        save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(tmp))  # clone: no shared storage
        tmp.replace(cached)
    return tensors


def apply_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], name: str) -> None:
    """Strict load with an error that says what does not fit (the wrong architecture or config)."""
    own = model.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    mismatched = [
        f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in tensors and tensors[k].shape != own[k].shape
    ]
    # Derived tables (rotary frequencies) that some implementations store and others compute are optional.
    missing = [k for k in missing if not k.endswith("freqs")]
    unexpected = [k for k in unexpected if not k.endswith("freqs")]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                parts.append(f"{len(items)} {label} ({', '.join(items[:3])}{', …' if len(items) > 3 else ''})")
        raise CheckpointError(f"{name} does not fit this model/config: {'; '.join(parts)}")
    model.load_state_dict({k: v for k, v in tensors.items() if k in own}, strict=False)
