"""How much of MVSep's catalog this server runs: `openmvsep models coverage`.

Each sep_type falls in one group:

- `exact`: it runs here, and at least one runnable option is the model it names (or needs no model: DSP);
- `substitute`: it runs here, but only through registry entries labelled `substitute: true` (a public model
  standing in for MVSep's own);
- `download`: nothing of it runs yet, but `openmvsep models download` would fetch what it needs;
- `none`: no public model in the registry serves it.

Each group also counts the share of the catalog's `usage` (MVSep's per-algorithm counter) it holds, which weighs
the algorithms by how much MVSep's users run them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from openmvsep.algorithms.preference import is_substitute
from openmvsep.algorithms.recipes import runnable_map
from openmvsep.engine.runtime import Runtime
from openmvsep.service.catalog import Algorithm, Catalog, all_algorithms

GROUPS = ("exact", "substitute", "download", "none")


@dataclass(frozen=True)
class SepTypeCoverage:
    sep_type: int
    name: str
    group: str  # one of GROUPS
    usage: int
    runnable_keys: tuple[str, ...]  # of its model field (or its first select field), runnable here now


@dataclass(frozen=True)
class Coverage:
    sep_types: tuple[SepTypeCoverage, ...]

    @property
    def usage_total(self) -> int:
        return sum(s.usage for s in self.sep_types)

    def totals(self) -> dict[str, dict[str, float]]:
        """group -> {sep_types, usage, usage_share (0..1)}."""
        total = self.usage_total or 1
        out: dict[str, dict[str, float]] = {}
        for group in GROUPS:
            members = [s for s in self.sep_types if s.group == group]
            usage = sum(s.usage for s in members)
            out[group] = {"sep_types": len(members), "usage": usage, "usage_share": usage / total}
        return out

    def as_json(self) -> dict:
        return {
            "sep_types": [
                {
                    "sep_type": s.sep_type,
                    "name": s.name,
                    "group": s.group,
                    "usage": s.usage,
                    "runnable_keys": list(s.runnable_keys),
                }
                for s in self.sep_types
            ],
            "totals": self.totals(),
            "usage_total": self.usage_total,
        }


def _usage(algorithm: Algorithm) -> int:
    try:
        return int(algorithm.raw.get("usage") or 0)
    except (TypeError, ValueError):
        return 0


def _model_field(algorithm: Algorithm) -> str | None:
    model = next((f for f in algorithm.fields if f.server_key == "model_type" and not f.is_text), None)
    return model.name if model else None


def measure(runtime: Runtime, algorithms: Iterable[Algorithm] | None = None) -> Coverage:
    """The coverage of the catalog by the weights on this machine's disk (and those the registry could fetch)."""
    algorithms = tuple(algorithms) if algorithms is not None else all_algorithms()
    here = replace(runtime, auto_download=False)  # what is on disk, whatever the server would fetch on first use
    now = Catalog(runnable_map(here), algorithms)
    later = Catalog(runnable_map(replace(runtime, auto_download=True)), algorithms)
    rows = []
    for algorithm in algorithms:
        sep_type = algorithm.render_id
        model = _model_field(algorithm)
        shown = model or next((f.name for f in algorithm.fields if not f.is_text), None)
        keys = tuple(now.available_keys(sep_type, shown)) if shown else ()
        if now.is_available(sep_type):
            if model is not None:
                only_substitutes = bool(keys) and all(is_substitute(here, sep_type, k) for k in keys)
            else:  # no model field: the one model is the one serving `SEP_TYPE:`
                only_substitutes = is_substitute(here, sep_type, "")
            group = "substitute" if only_substitutes else "exact"
        elif later.is_available(sep_type):
            group = "download"
        else:
            group = "none"
        rows.append(SepTypeCoverage(sep_type, algorithm.name, group, _usage(algorithm), keys))
    return Coverage(tuple(rows))
