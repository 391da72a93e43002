"""Which option of a field is best when several can run here, and which public models a sep_type would want.

A registry entry may carry a `rank` (higher first; 0 when absent) and a published `sdr` (breaks ties of rank;
unknown sorts after every known one). An option that no entry serves (a DSP mode, an ensemble, a bag of
specialists) scores as an entry with neither. The catalog turns these scores into its default key and into the
substitute for an option that cannot run; `openmvsep models download --sep-type N` into what to fetch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from openmvsep.engine.runtime import Runtime
from openmvsep.engine.weights import WeightEntry, WeightsRegistry

Score = tuple[float, float]  # (rank, sdr): greater is better
OptionScore = Callable[[int, str], Score]  # (sep_type, model_type key) -> score


def entry_score(entry: WeightEntry | None) -> Score:
    if entry is None:
        return (0.0, -math.inf)
    return (float(entry.rank), entry.sdr if entry.sdr is not None else -math.inf)


def option_scores(runtime: Runtime) -> OptionScore:
    """The score of each catalog option `SEP_TYPE:KEY` of a model field, read from the registry when asked."""

    def score(sep_type: int, key: str) -> Score:
        return entry_score(runtime.registry.serving(f"{sep_type}:{key}"))

    return score


def serves_sep_type(entry: WeightEntry, sep_type: int) -> bool:
    return any(label.split(":", 1)[0] == str(sep_type) for label in entry.serves)


def best_entries(registry: WeightsRegistry, sep_type: int) -> list[WeightEntry]:
    """Entries serving an option of `sep_type` that can be downloaded, best first (registry order on ties);
    exact models before labelled substitutes of the same score."""
    candidates = [e for e in registry.entries.values() if e.urls and serves_sep_type(e, sep_type)]
    order = {e.name: i for i, e in enumerate(candidates)}
    return sorted(candidates, key=lambda e: (-entry_score(e)[0], -entry_score(e)[1], e.substitute, order[e.name]))


def is_substitute(runtime: Runtime, sep_type: int, key: str) -> bool:
    """Whether the model serving this option is a labelled public stand-in rather than the model it names."""
    entry = runtime.registry.serving(f"{sep_type}:{key}")
    return entry is not None and entry.substitute
