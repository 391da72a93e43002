"""Recipes: what running one catalog algorithm (sep_type + chosen options) means for the engine.

A recipe takes decoded inputs and returns named stems in the model's native order. The service asks which
sep_types and option keys this server can run (`runnable_map`); the runner calls `run`. Neural recipes
find their model through the weights registry (catalog option `SEP_TYPE:KEY` -> checkpoint), so an option
becomes runnable as soon as its weights are present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Collection, Mapping

import numpy as np

from openmvsep.engine.runtime import Runtime

Stems = dict[str, np.ndarray]
# (inputs by role as (channels, frames) float32, their common sample rate, chosen options, runtime) -> (stems, rate)
RunFn = Callable[[dict[str, np.ndarray], int, dict[str, str], Runtime], tuple[Stems, int]]

DSP_CENTRE_KEY = "dsp"
MODEL_RATE = 44100  # every public checkpoint in the registry works at 44.1 kHz


@dataclass(frozen=True)
class Recipe:
    sep_type: int
    run: RunFn
    # field name -> option keys this recipe handles; None: every option of every field.
    # A callable computes them from the runtime (which weights are present).
    runnable: Mapping[str, Collection[str]] | Callable[[Runtime], Mapping[str, Collection[str]] | None] | None = None
    inputs: tuple[str, ...] = ("audiofile",)
    # whether a long input may be cut into chunks processed independently and crossfaded back together
    chunkable: bool = True
    # rate the inputs are decoded at; None keeps the (first) input's own rate
    sample_rate: int | None = None
    # chosen options -> stem keys in output order, known before running (used to name files)
    stems: Callable[[dict[str, str]], list[str]] = field(default=lambda _opts: [])


def _phantom_centre(inputs: dict[str, np.ndarray], rate: int, _opts: dict[str, str], _rt: Runtime):
    from openmvsep.engine.phantom_centre import extract_centre

    return extract_centre(inputs["audiofile"], rate), rate


def _matchering(inputs: dict[str, np.ndarray], rate: int, _opts: dict[str, str], _rt: Runtime):
    from openmvsep.engine.mastering import match_master

    return match_master(inputs["target_audiofile"], rate, inputs["reference_audiofile"], rate)


def _separate(runtime: Runtime, model: str, mix: np.ndarray, num_overlap: int | None = None) -> Stems:
    """The model's own stems; `model` is a catalog option ('40:4') or a registry entry name."""
    from openmvsep.engine.separator import separate

    loaded = runtime.model_for(model) if ":" in model else runtime.load(runtime.registry.get(model))
    return separate(loaded, mix, batch_size=runtime.batch_size, precision=runtime.precision,
                    num_overlap=num_overlap, residual=False)


OVERLAPS = {"2": 2, "8": 8}  # MVSep's overlap option keys: 50 % and 87.5 %


def vocals_model_recipe(sep_type: int, *, overlap: bool = False) -> Recipe:
    """A model that gives vocals; the instrumental is the mix minus the vocals (MVSep's two outputs)."""

    def run(inputs: dict[str, np.ndarray], rate: int, opts: dict[str, str], runtime: Runtime):
        mix = inputs["audiofile"]
        stems = _separate(runtime, f"{sep_type}:{opts.get('model_type')}", mix,
                          OVERLAPS.get(opts.get("overlap", "")) if overlap else None)
        vocals = stems["vocals"]
        return {"vocals": vocals, "instrumental": mix - vocals}, rate

    return Recipe(sep_type, run, runnable=_model_keys(sep_type), sample_rate=MODEL_RATE,
                  stems=lambda _o: ["vocals", "instrumental"])


def multistem_recipe(sep_type: int, stems: list[str]) -> Recipe:
    """A model whose stems are the outputs, in the model's own order (demucs: drums, bass, other, vocals)."""

    def run(inputs: dict[str, np.ndarray], rate: int, opts: dict[str, str], runtime: Runtime):
        out = _separate(runtime, f"{sep_type}:{opts.get('model_type')}", inputs["audiofile"])
        missing = [s for s in stems if s not in out]
        if missing:
            raise ValueError(f"the model gives {sorted(out)}, not {missing}")
        return {s: out[s] for s in stems}, rate

    return Recipe(sep_type, run, runnable=_model_keys(sep_type), sample_rate=MODEL_RATE, stems=lambda _o: stems)


def ensemble_recipe(sep_type: int, members: Mapping[str, tuple[str, ...]]) -> Recipe:
    """MVSep's vocal ensembles: the vocals of each member model averaged in the wave domain."""

    def run(inputs: dict[str, np.ndarray], rate: int, opts: dict[str, str], runtime: Runtime):
        from openmvsep.engine.ensemble import ensemble

        mix = inputs["audiofile"]
        names = members[opts["model_type"]]
        vocals = ensemble([_separate(runtime, name, mix)["vocals"] for name in names], "avg_wave")
        return {"vocals": vocals, "instrumental": mix - vocals}, rate

    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]]:
        ok = [key for key, names in members.items()
              if all(runtime.can_load(runtime.registry.entries.get(n)) for n in names)]
        return {"add_opt2": ok}

    return Recipe(sep_type, run, runnable=runnable, sample_rate=MODEL_RATE, stems=lambda _o: ["vocals", "instrumental"])


def _model_keys(sep_type: int) -> Callable[[Runtime], Mapping[str, Collection[str]]]:
    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]]:
        keys = [s.split(":", 1)[1] for e in runtime.registry.entries.values() for s in e.serves
                if s.split(":", 1)[0] == str(sep_type)]
        return {"add_opt1": runtime.runnable_keys(sep_type, keys)}

    return runnable


RECIPES: dict[int, Recipe] = {
    55: Recipe(55, _phantom_centre, runnable={"add_opt1": [DSP_CENTRE_KEY]}, stems=lambda _o: ["center", "wide"]),
    68: Recipe(
        68, _matchering, inputs=("target_audiofile", "reference_audiofile"), chunkable=False, sample_rate=44100,
        stems=lambda _o: ["result"],
    ),
    40: vocals_model_recipe(40, overlap=True),
    48: vocals_model_recipe(48, overlap=True),
    25: vocals_model_recipe(25),
    20: multistem_recipe(20, ["drums", "bass", "other", "vocals"]),
    26: ensemble_recipe(26, {"5": ("mel_band_roformer_kj", "bs_roformer_viperx_1297")}),
}


def runnable_map(runtime: Runtime | None = None) -> dict[int, Mapping[str, Collection[str]] | None]:
    """sep_type -> runnable option keys per field, the form the catalog takes (only what can run now)."""
    out: dict[int, Mapping[str, Collection[str]] | None] = {}
    for sep_type, recipe in RECIPES.items():
        spec = recipe.runnable
        if callable(spec):
            if runtime is None:
                continue
            spec = spec(runtime)
            if not spec or not any(spec.values()):
                continue
        out[sep_type] = spec
    return out
