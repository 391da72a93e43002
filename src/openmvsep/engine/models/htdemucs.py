"""HTDemucs (and the older demucs families) through the `demucs` package's own model classes.

Three ways in, none of which touches the network:

* `from_config(config)` — an MSST config (`model: htdemucs` + an `htdemucs:` section + `training.*`) gives the
  model MSST's `models/demucs4ht.get_model` builds. MSST ships its own copy of the HTDemucs class; with
  `num_subbands: 1` (every public MSST htdemucs config) it has exactly demucs' parameter and buffer names and the
  same forward, so MSST checkpoints load strictly into `demucs.htdemucs.HTDemucs`. The two real differences are
  handled here: MSST's class defaults `use_train_segment` to False (demucs': True), and MSST's `num_subbands > 1`
  changes the first/last layer widths, which demucs' class cannot express (refused with a ConfigError).
* `load_demucs_package(...)` — demucs' own files: the official `.th` torch pickle of {klass, args, kwargs, state}
  (unpickling runs code, so only for files the caller pinned by sha256: `trusted=True`), and demucs 4.1.0's
  Hugging Face layout, a safetensors file whose metadata holds the class path and the JSON init arguments (safe
  for any file: no pickle, classes restricted to an allow-list). `save_demucs_safetensors` writes that layout, so
  a pinned `.th` can be converted once and loaded safely from then on.
* `load_bag(...)` — a demucs bag YAML (`models:` signatures, optional `weights:` and `segment:`) as a
  `demucs.apply.BagOfModels`, with the members resolved by a caller-supplied function.

Model call convention (demucs'): `model(x)` takes (batch, channels, samples) and returns
(batch, sources, channels, samples), also for one source. Models are returned in eval mode.
"""

from __future__ import annotations

import inspect
import io
import json
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import yaml
from demucs.apply import BagOfModels
from demucs.demucs import Demucs
from demucs.hdemucs import HDemucs
from demucs.htdemucs import HTDemucs
from torch import nn

from openmvsep.engine.config import Config, ConfigError

__all__ = [
    "DEMUCS_CLASSES",
    "DemucsLoadError",
    "UntrustedCheckpointError",
    "from_config",
    "load_bag",
    "load_demucs_package",
    "model_from_package",
    "save_demucs_safetensors",
]

# A model of one of the classes below (what demucs' BagOfModels takes).
DemucsModel = Demucs | HDemucs | HTDemucs

# The only classes a package may name. A safetensors file is untrusted input, and its metadata names the class to
# build: resolving arbitrary dotted paths (as demucs.hf does) would let a file import any module.
DEMUCS_CLASSES: dict[str, type[DemucsModel]] = {
    "demucs.htdemucs.HTDemucs": HTDemucs,
    "demucs.hdemucs.HDemucs": HDemucs,
    "demucs.demucs.Demucs": Demucs,
}

# MSST's `config.model` value -> class (the same three names MSST's demucs4ht.get_model accepts).
_MSST_FAMILIES: dict[str, type[DemucsModel]] = {"htdemucs": HTDemucs, "hdemucs": HDemucs, "demucs": Demucs}


class DemucsLoadError(ValueError):
    """A demucs package, safetensors file or bag that cannot be turned into a model; the message says why."""


class UntrustedCheckpointError(DemucsLoadError):
    """Refused to unpickle a file that the caller has not verified."""


# ----------------------------------------------------------------------------------------------------------------
# MSST configs


def from_config(config: Config) -> DemucsModel:
    """The model MSST builds for an htdemucs config (`model: htdemucs`), as a `demucs.htdemucs.HTDemucs`.

    Arguments are MSST's: sources/audio_channels/samplerate/segment from `training.instruments/channels/
    samplerate/segment`, everything else from the section named by `model`. Unknown section keys are ignored.
    """
    family = config.get("model")
    if family not in _MSST_FAMILIES:
        raise ConfigError(
            f"config key 'model' must be one of {sorted(_MSST_FAMILIES)} for a demucs model, got {family!r}"
        )
    klass = _MSST_FAMILIES[family]
    section = config.get(family)
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"config section '{family}' must be a mapping")
    training = config.get("training")
    if not isinstance(training, Mapping):
        raise ConfigError("config section 'training' is missing (instruments, samplerate, segment, channels)")

    extras = {
        "sources": _instruments(training),
        "audio_channels": _positive_int(training, "channels"),
        "samplerate": _positive_int(training, "samplerate"),
        "segment": _positive_number(training, "segment"),
    }
    kwargs = {k: _yaml12_number(v) for k, v in section.items() if k not in extras}
    num_subbands = kwargs.pop("num_subbands", 1)
    if num_subbands not in (None, 1):
        raise ConfigError(
            f"{family}.num_subbands={num_subbands!r}: only 1 is supported (demucs' HTDemucs has no sub-band layers; "
            "MSST's sub-band variant changes the first and last layer widths)"
        )
    if klass is HTDemucs:
        # MSST's copy of the class runs chunks at their own length unless told otherwise.
        kwargs.setdefault("use_train_segment", False)
    kwargs = _known_arguments(klass, kwargs)
    # YAML gives lists where demucs keeps lists; tuples from !!python/tuple are fine too. Config wraps nested
    # mappings, which the constructors do not need.
    kwargs = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in kwargs.items()}
    try:
        model = klass(**extras, **kwargs)
    except (TypeError, ValueError, AssertionError, ZeroDivisionError) as e:
        raise ConfigError(f"config section '{family}' does not describe a valid {klass.__name__}: {e!r}") from None
    return model.eval()


# PyYAML (YAML 1.1) reads `1e-3` — no dot in the mantissa — as a string; MSST reads htdemucs configs with
# OmegaConf, whose loader makes it a float (the public configs have `dconv_init: 1e-3`).
_EXPONENT_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+")


def _yaml12_number(value: Any) -> Any:
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value):
        return float(value.replace("_", ""))
    if isinstance(value, (list, tuple)):
        return type(value)(_yaml12_number(v) for v in value)
    return value


def _instruments(training: Mapping) -> list[str]:
    instruments = training.get("instruments")
    if (
        not isinstance(instruments, (list, tuple))
        or not instruments
        or not all(isinstance(name, str) and name for name in instruments)
    ):
        raise ConfigError(f"training.instruments must be a non-empty list of names, got {instruments!r}")
    if len(set(instruments)) != len(instruments):
        raise ConfigError(f"training.instruments has duplicates: {instruments!r}")
    return list(instruments)


def _positive_int(training: Mapping, key: str) -> int:
    value = training.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"training.{key} must be a positive integer, got {value!r}")
    return value


def _positive_number(training: Mapping, key: str) -> int | float | Fraction:
    value = training.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)) or not value > 0:
        raise ConfigError(f"training.{key} must be a positive number, got {value!r}")
    return value


def _known_arguments(klass: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    accepted = inspect.signature(klass).parameters
    return {k: v for k, v in kwargs.items() if k in accepted}


# ----------------------------------------------------------------------------------------------------------------
# demucs packages


def load_demucs_package(source: str | Path | bytes | Mapping[str, Any], *, trusted: bool) -> DemucsModel:
    """A demucs model from an official `.th` package, a demucs 4.1.0 safetensors file, or an unpickled package dict.

    `source` is a path, the file's bytes, or a dict {klass, args, kwargs, state} that the caller already loaded.
    Safetensors input is always accepted. A torch pickle (`.th`) is only opened when `trusted` is True — the
    caller checked the file's sha256 against a pinned value — because unpickling can run arbitrary code;
    otherwise UntrustedCheckpointError. Either way the named class must be one of DEMUCS_CLASSES.
    """
    if isinstance(source, Mapping):
        return model_from_package(source)
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    name = str(source) if isinstance(source, (str, Path)) else "<bytes>"
    if _looks_like_safetensors(data):
        return _load_safetensors(data, name)
    if not trusted:
        raise UntrustedCheckpointError(
            f"{name} is a torch pickle: loading it needs weights_only=False, which can run code from the file. "
            "Verify its sha256 against a pinned value and pass trusted=True, or use a safetensors copy"
        )
    try:
        package = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)  # noqa: S614 - trusted only
    except Exception as e:
        raise DemucsLoadError(f"{name} is not a readable torch file: {e!r}") from None
    if not isinstance(package, Mapping):
        raise DemucsLoadError(f"{name} holds a {type(package).__name__}, not a demucs package dict")
    return model_from_package(package, name=name)


def model_from_package(package: Mapping[str, Any], *, name: str = "package") -> DemucsModel:
    """Build and fill the model a {klass, args, kwargs, state} package describes (klass: class or dotted path)."""
    missing = [key for key in ("klass", "args", "kwargs", "state") if key not in package]
    if missing:
        raise DemucsLoadError(f"{name} is not a demucs package: missing {missing}")
    klass = _allowed_class(package["klass"], name)
    args = list(package["args"] or [])
    kwargs = dict(package["kwargs"] or {})
    state = package["state"]
    if not isinstance(state, Mapping):
        raise DemucsLoadError(f"{name}: 'state' must be a mapping of tensors")
    if state.get("__quantized"):
        raise DemucsLoadError(f"{name} holds a diffq-quantized state (e.g. mdx_extra_q), which is not supported")
    # Like demucs' own loader: arguments the installed class no longer accepts are dropped.
    kwargs = _known_arguments(klass, kwargs)
    try:
        model = klass(*args, **kwargs)
    except (TypeError, ValueError, AssertionError, ZeroDivisionError) as e:
        raise DemucsLoadError(f"{name}: cannot build {klass.__name__}({args}, {kwargs}): {e!r}") from None
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as e:
        raise DemucsLoadError(f"{name}: the state does not fit {klass.__name__}: {e}") from None
    return model.eval()


def _allowed_class(klass: Any, name: str) -> type[DemucsModel]:
    if isinstance(klass, str):
        if klass not in DEMUCS_CLASSES:
            raise DemucsLoadError(f"{name} names class {klass!r}; allowed: {sorted(DEMUCS_CLASSES)}")
        return DEMUCS_CLASSES[klass]
    if klass in DEMUCS_CLASSES.values():
        return klass
    raise DemucsLoadError(f"{name} names class {klass!r}; allowed: {sorted(DEMUCS_CLASSES)}")


def _looks_like_safetensors(data: bytes) -> bool:
    # Layout: 8-byte little-endian header length, then a JSON object. Torch files start with a zip or pickle magic.
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return 2 <= header_len <= len(data) - 8 and data[8:9] == b"{"


def _load_safetensors(data: bytes, name: str) -> DemucsModel:
    from safetensors.torch import load as load_tensors  # local: only this path needs it

    try:
        tensors = load_tensors(data)
        metadata = _safetensors_metadata(data)
    except Exception as e:
        raise DemucsLoadError(f"{name} is not a readable safetensors file: {e!r}") from None
    for key in ("klass", "args", "kwargs"):
        if key not in metadata:
            raise DemucsLoadError(f"{name}: safetensors metadata lacks {key!r}; not a demucs model file")
    try:
        args = _decode_json(json.loads(metadata["args"]))
        kwargs = _decode_json(json.loads(metadata["kwargs"]))
        structure = json.loads(metadata["structure"]) if "structure" in metadata else None
    except (json.JSONDecodeError, ValueError, KeyError, TypeError, ZeroDivisionError) as e:
        raise DemucsLoadError(f"{name}: invalid JSON in the safetensors metadata: {e!r}") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise DemucsLoadError(f"{name}: metadata args must be a JSON list and kwargs a JSON object")
    state = tensors if structure is None else _unflatten(structure, tensors, name)
    return model_from_package({"klass": metadata["klass"], "args": args, "kwargs": kwargs, "state": state}, name=name)


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError("__metadata__ is not an object")
    return metadata


def _decode_json(value: Any) -> Any:
    """demucs' JSON for init arguments: plain JSON plus {"_type": "fraction", "numerator", "denominator"}."""
    if isinstance(value, dict):
        if value.get("_type") == "fraction":
            return Fraction(int(value["numerator"]), int(value["denominator"]))
        return {key: _decode_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_json(item) for item in value]
    return value


def _encode_json(value: Any) -> Any:
    if isinstance(value, Fraction):
        return {"_type": "fraction", "numerator": value.numerator, "denominator": value.denominator}
    if isinstance(value, Mapping):
        return {str(key): _encode_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_json(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise DemucsLoadError(f"cannot store init argument {value!r} ({type(value).__name__}) as JSON")


def _unflatten(node: Any, tensors: Mapping[str, torch.Tensor], name: str) -> Any:
    """demucs' nested-state structure (used for diffq packed states), minus class references."""
    if not isinstance(node, dict):
        return node
    if "_tensor" in node:
        if node["_tensor"] not in tensors:
            raise DemucsLoadError(f"{name}: structure names a missing tensor {node['_tensor']!r}")
        return tensors[node["_tensor"]]
    if "_dict" in node:
        return {key: _unflatten(item, tensors, name) for key, item in node["_dict"]}
    if "_list" in node:
        return [_unflatten(item, tensors, name) for item in node["_list"]]
    if "_tuple" in node:
        return tuple(_unflatten(item, tensors, name) for item in node["_tuple"])
    if "_class" in node:
        # Only diffq states carry class references; importing a module named by the file is not safe.
        raise DemucsLoadError(f"{name}: the state references class {node['_class']!r} (quantized model); unsupported")
    raise DemucsLoadError(f"{name}: invalid structure node {node!r}")


def save_demucs_safetensors(model: nn.Module, path: str | Path, *, half: bool = False) -> None:
    """Write `model` in demucs 4.1.0's safetensors layout (readable by `demucs.hf.load_safetensors_model` too).

    The model must come from a demucs class built through its constructor (demucs records the init arguments).
    `half` stores floating tensors as float16, like demucs' own packages.
    """
    from safetensors.torch import save_file

    klass_path = next((path_ for path_, klass in DEMUCS_CLASSES.items() if type(model) is klass), None)
    if klass_path is None:
        raise DemucsLoadError(f"cannot save {type(model).__name__}: not one of {sorted(DEMUCS_CLASSES)}")
    init = getattr(model, "_init_args_kwargs", None)
    if init is None:
        raise DemucsLoadError("the model carries no recorded init arguments (_init_args_kwargs)")
    args, kwargs = init
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        state[key] = tensor.contiguous()
    metadata = {
        "klass": klass_path,
        "args": json.dumps(_encode_json(list(args))),
        "kwargs": json.dumps(_encode_json(dict(kwargs))),
    }
    save_file(state, str(path), metadata=metadata)


# ----------------------------------------------------------------------------------------------------------------
# bags


def load_bag(bag: str | Path | Mapping[str, Any], resolve: Callable[[str], DemucsModel]) -> BagOfModels:
    """A `demucs.apply.BagOfModels` from a bag YAML path or its parsed mapping.

    `resolve(signature)` returns the loaded model for each entry of `models:` (e.g. via `load_demucs_package` on
    a pinned file). `weights:` (one list of per-source weights per model) defaults to all ones; `segment:`
    overrides each HTDemucs member's segment only where it is not longer than the member's own (demucs 4.1.0).
    """
    name = str(bag) if isinstance(bag, (str, Path)) else "bag"
    if isinstance(bag, (str, Path)):
        try:
            bag = yaml.safe_load(Path(bag).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise DemucsLoadError(f"cannot read bag {name}: {e}") from None
    if not isinstance(bag, Mapping):
        raise DemucsLoadError(f"bag {name} must be a mapping with a 'models' list")
    signatures = bag.get("models")
    if (
        not isinstance(signatures, list)
        or not signatures
        or not all(isinstance(sig, str) and sig for sig in signatures)
    ):
        raise DemucsLoadError(f"bag {name}: 'models' must be a non-empty list of signatures, got {signatures!r}")
    models = [resolve(sig) for sig in signatures]
    first = models[0]
    for sig, model in zip(signatures, models):
        for attribute in ("sources", "samplerate", "audio_channels"):
            if getattr(model, attribute) != getattr(first, attribute):
                raise DemucsLoadError(
                    f"bag {name}: model {sig} has {attribute}={getattr(model, attribute)!r}, "
                    f"the first has {getattr(first, attribute)!r}"
                )
    weights = bag.get("weights")
    if weights is not None:
        weights = _bag_weights(weights, len(models), len(first.sources), name)
    segment = bag.get("segment")
    if segment is not None and (isinstance(segment, bool) or not isinstance(segment, (int, float)) or segment <= 0):
        raise DemucsLoadError(f"bag {name}: 'segment' must be a positive number, got {segment!r}")
    return BagOfModels(models, weights, segment).eval()


def _bag_weights(weights: Any, n_models: int, n_sources: int, name: str) -> list[list[float]]:
    def is_number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    if (
        not isinstance(weights, list)
        or len(weights) != n_models
        or not all(isinstance(row, list) and len(row) == n_sources and all(map(is_number, row)) for row in weights)
    ):
        raise DemucsLoadError(f"bag {name}: 'weights' must be {n_models} lists of {n_sources} numbers")
    for k in range(n_sources):
        if sum(float(row[k]) for row in weights) == 0:
            raise DemucsLoadError(f"bag {name}: source {k} has weight 0 in every model")
    return [[float(x) for x in row] for row in weights]
