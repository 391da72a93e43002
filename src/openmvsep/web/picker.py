"""The algorithm picker and its option fields, as the templates see them, built from the catalog.

The rules stay in the catalog: which algorithms and option keys run here (`is_available`, `available_keys`), which
fields a choice hides (`hidden_fields`, MVSep's `conditions`), what an empty value means (`default_key`), which
keys need an account (`registered_only_keys`, which create refuses without one) and why a choice cannot run
(`unavailable_reason`). This module only orders and labels them for a form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from openmvsep.service.catalog import Algorithm, Catalog, OptionError
from openmvsep.service.weights_admin import WeightsAdmin

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


REGISTER_TO_USE = "register to use"
NOT_INSTALLED = "weights not installed here"


@dataclass(frozen=True)
class OptionView:
    key: str
    label: str
    runnable: bool
    why_not: str | None = None  # why it cannot be chosen by this visitor (shown beside it, disabled); None: it can


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


def fields(
    catalog: Catalog, algorithm: Algorithm, given: Mapping[str, str], *, registered: bool = True
) -> tuple[FieldView, ...]:
    """The fields to show for the values chosen so far: hidden ones (conditions) are left out, every select has a
    valid value (the given one, else what an empty value means on this server), keys that cannot run here are
    marked, and so are keys for registered users only when the visitor is not logged in (`registered`); such a
    visitor's value moves off a key like that to the first one it may choose."""
    sep_type = algorithm.render_id
    runnable = catalog.is_available(sep_type)
    allowed = {f.name: set(catalog.available_keys(sep_type, f.name)) if runnable else set() for f in algorithm.fields}
    values: dict[str, str] = {}
    for f in algorithm.fields:
        text = str(given.get(f.name) or "").strip()
        if f.is_text:
            values[f.name] = text or f.fallback_key
            continue
        value = text if text in f.options else catalog.default_key(sep_type, f)
        if not registered and value in f.registered_only:
            usable = [k for k in f.options if k in allowed[f.name] and k not in f.registered_only]
            value = usable[0] if usable else value
        values[f.name] = value
    hidden = algorithm.hidden_fields(values)
    help_links = {str(e["name"]): e.get("help_link") for e in algorithm.raw.get("algorithm_fields", [])}

    def option(f, key: str, label: str) -> OptionView:
        why_not = None
        if key not in allowed[f.name]:
            why_not = NOT_INSTALLED
        elif not registered and key in f.registered_only:
            why_not = REGISTER_TO_USE
        return OptionView(key, label, key in allowed[f.name], why_not)

    return tuple(
        FieldView(
            name=f.name,
            label=f.text,
            input_type=f.input_type,
            value=values[f.name],
            options=tuple(option(f, k, label) for k, label in f.options.items()),
            help_link=help_links.get(f.name) or None,
        )
        for f in algorithm.fields
        if f.name not in hidden
    )


def install_commands(weights: WeightsAdmin, sep_types: Iterable[int]) -> dict[int, str | None]:
    """For an admin: per sep_type that cannot run here, the command that installs its best public model (None:
    no public model in the weights registry serves it)."""
    return {sep_type: weights.install_command(sep_type) for sep_type in sep_types}


def outputs(algorithm: Algorithm, catalog: Catalog, given: Mapping[str, str]) -> list[str]:
    """The stems this choice gives, by label (what the result page will list)."""
    try:
        choice = catalog.resolve(algorithm.render_id, given)
    except OptionError:
        return []
    return list(algorithm.output_labels(dict(choice)).values())
