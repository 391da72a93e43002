"""Recipes: what running one catalog algorithm (sep_type + chosen options) means for the engine.

A recipe takes decoded inputs and returns named stems in the model's native order. The service asks the
registry which sep_types and option keys this server can run; the runner calls `run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Collection, Mapping

import numpy as np

from openmvsep.engine.cache import ModelCache

Stems = dict[str, np.ndarray]
# (inputs by role as (channels, frames) float32, their common sample rate, chosen options, model cache) -> (stems, rate)
RunFn = Callable[[dict[str, np.ndarray], int, dict[str, str], ModelCache], tuple[Stems, int]]

DSP_CENTRE_KEY = "dsp"


@dataclass(frozen=True)
class Recipe:
    sep_type: int
    run: RunFn
    # field name -> option keys this recipe handles; None: every option of every field
    runnable: Mapping[str, Collection[str]] | None = None
    inputs: tuple[str, ...] = ("audiofile",)
    # whether a long input may be cut into chunks processed independently and crossfaded back together
    chunkable: bool = True
    # rate the inputs are decoded at; None keeps the (first) input's own rate
    sample_rate: int | None = None
    # chosen options -> stem keys in output order, known before running (used to name files)
    stems: Callable[[dict[str, str]], list[str]] = field(default=lambda _opts: [])


def _phantom_centre(inputs: dict[str, np.ndarray], rate: int, _opts: dict[str, str], _cache: ModelCache):
    from openmvsep.engine.phantom_centre import extract_centre

    return extract_centre(inputs["audiofile"], rate), rate


def _matchering(inputs: dict[str, np.ndarray], rate: int, _opts: dict[str, str], _cache: ModelCache):
    from openmvsep.engine.mastering import match_master

    return match_master(inputs["target_audiofile"], rate, inputs["reference_audiofile"], rate)


RECIPES: dict[int, Recipe] = {
    55: Recipe(55, _phantom_centre, runnable={"add_opt1": [DSP_CENTRE_KEY]}, stems=lambda _o: ["center", "wide"]),
    68: Recipe(
        68, _matchering, inputs=("target_audiofile", "reference_audiofile"), chunkable=False, sample_rate=44100,
        stems=lambda _o: ["result"],
    ),
}


def runnable_map() -> dict[int, Mapping[str, Collection[str]] | None]:
    """sep_type -> runnable option keys per field, the form the catalog takes."""
    return {sep_type: recipe.runnable for sep_type, recipe in RECIPES.items()}
