"""The algorithm picker and its option fields, as the templates see them, built from the catalog.

The rules stay in the catalog: which algorithms and option keys run here (`is_available`, `available_keys`), which
fields a choice hides (`hidden_fields`, MVSep's `conditions`), what an empty value means (`default_key`) and why a
choice cannot run (`unavailable_reason`). This module only orders and labels them for a form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from openmvsep.service.catalog import Algorithm, Catalog, OptionError

# The page's single-file form; matchering_upload (two files) and no_upload (prompts) get their own forms.
SCOPE = "single_upload"


@dataclass(frozen=True)
class AlgorithmView:
    sep_type: int
    name: str
    group: str
    description: str
    runnable: bool
    reason: str | None  # why it cannot run here (None when it can)
    price_coefficient: float


@dataclass(frozen=True)
class OptionView:
    key: str
    label: str
    runnable: bool


@dataclass(frozen=True)
class FieldView:
    name: str  # add_opt1..4, the form field's name
    label: str
    input_type: str  # select | text | textarea
    value: str
    options: tuple[OptionView, ...]
    help_link: str | None


@dataclass(frozen=True)
class GroupView:
    name: str
    algorithms: tuple[AlgorithmView, ...]


def algorithm_view(catalog: Catalog, algorithm: Algorithm) -> AlgorithmView:
    runnable = catalog.is_available(algorithm.render_id)
    reason = None
    if not runnable:
        try:
            reason = catalog.unavailable_reason(catalog.resolve(algorithm.render_id, {}))
        except OptionError as e:  # a required text field with no default: the algorithm's own wording
            reason = str(e)
        reason = reason or f"{algorithm.name} cannot run on this server."
    return AlgorithmView(
        sep_type=algorithm.render_id,
        name=algorithm.name,
        group=str(algorithm.group.get("name") or "Other"),
        description=algorithm.description,
        runnable=runnable,
        reason=reason,
        price_coefficient=algorithm.price_coefficient,
    )


@lru_cache(maxsize=4)
def groups(catalog: Catalog, scope: str = SCOPE) -> tuple[GroupView, ...]:
    """Groups in catalog order, those with something runnable first; inside each, runnable algorithms first.
    Built once per catalog (the catalog does not change while a process runs)."""
    views = [algorithm_view(catalog, a) for a in _algorithms(catalog, scope)]
    by_group: dict[str, list[AlgorithmView]] = {}
    for v in views:
        by_group.setdefault(v.group, []).append(v)
    built = [
        GroupView(name, tuple(sorted(members, key=lambda v: not v.runnable))) for name, members in by_group.items()
    ]
    return tuple(sorted(built, key=lambda g: not any(a.runnable for a in g.algorithms)))


def _algorithms(catalog: Catalog, scope: str) -> list[Algorithm]:
    out = []
    for element in catalog.list(scope):
        algorithm = catalog.get(int(element["render_id"]))
        if algorithm is not None:
            out.append(algorithm)
    return out


def first_runnable(catalog: Catalog, scope: str = SCOPE) -> int | None:
    for group in groups(catalog, scope):
        for a in group.algorithms:
            if a.runnable:
                return a.sep_type
    return None


def fields(catalog: Catalog, algorithm: Algorithm, given: Mapping[str, str]) -> tuple[FieldView, ...]:
    """The fields to show for the values chosen so far: hidden ones (conditions) are left out, every select has a
    valid value (the given one, else what an empty value means on this server), keys that cannot run here are
    marked."""
    sep_type = algorithm.render_id
    values: dict[str, str] = {}
    for f in algorithm.fields:
        text = str(given.get(f.name) or "").strip()
        if f.is_text:
            values[f.name] = text or f.fallback_key
        else:
            values[f.name] = text if text in f.options else catalog.default_key(sep_type, f)
    hidden = algorithm.hidden_fields(values)
    runnable = catalog.is_available(sep_type)
    help_links = {str(e["name"]): e.get("help_link") for e in algorithm.raw.get("algorithm_fields", [])}
    views = []
    for f in algorithm.fields:
        if f.name in hidden:
            continue
        allowed = set(catalog.available_keys(sep_type, f.name)) if runnable else set()
        views.append(
            FieldView(
                name=f.name,
                label=f.text,
                input_type=f.input_type,
                value=values[f.name],
                options=tuple(OptionView(k, label, k in allowed) for k, label in f.options.items()),
                help_link=help_links.get(f.name) or None,
            )
        )
    return tuple(views)


def outputs(algorithm: Algorithm, catalog: Catalog, given: Mapping[str, str]) -> list[str]:
    """The stems this choice gives, by label (what the result page will list)."""
    try:
        choice = catalog.resolve(algorithm.render_id, given)
    except OptionError:
        return []
    return list(algorithm.output_labels(dict(choice)).values())
