"""The algorithm catalog: MVSep's list of separation types and what this server can run of it.

The data is MVSep's own `app/algorithms` dump (catalog_data/algorithms-2026.json, kept byte-for-byte) plus
catalog_data/extra_algorithms.json, which holds the entries of the other scopes (no_upload, matchering_upload)
in the same element shape. Elements are served unchanged apart from additive keys (`is_available`,
`available_keys`, `mvsep_default_key`), one extra option (sep_type 55 gets a DSP phantom-centre mode that needs
no download) and, for what runs here, `default_key`: the field's best runnable key, so that a client that
preselects the default asks for something this server runs (MVSep's own stays in `mvsep_default_key`).

`runnable` (given by whoever knows the engines and the installed weights) says which sep_types and which
option keys this server can run; the catalog only answers questions about it.
"""

from __future__ import annotations

import builtins
import copy
import functools
import importlib.resources
import json
import logging
import math
import time
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from openmvsep.algorithms.choice import Choice, Chosen

SCOPES = ("single_upload", "no_upload", "matchering_upload")
DEFAULT_SCOPE = "single_upload"
DSP_CENTRE_KEY = "dsp"
MAX_TEXT_CHARS = 5000

log = logging.getLogger("openmvsep.catalog")

_DATA_FILES = ("algorithms-2026.json", "extra_algorithms.json")
_TEXT_INPUT_TYPES = frozenset({"text", "textarea"})


@dataclass(frozen=True)
class _ExtraOption:
    """An option key this server adds to an MVSep field (the real data is never edited on disk)."""

    sep_type: int
    field_name: str
    key: str
    label: str
    outputs: dict[str, str]


_EXTRA_OPTIONS = (
    _ExtraOption(
        55, "add_opt1", DSP_CENTRE_KEY, "Phantom Centre (DSP, no download)", {"center": "Center", "wide": "Wide"}
    ),
)


class OptionError(ValueError):
    """A create request named an option value the algorithm does not have; str(e) is meant for the API user."""


@dataclass(frozen=True)
class Condition:
    """Show/hide rule of a field: it applies when the field `depends_on` has one of `values`."""

    depends_on: str  # field name (add_optN) of the field it looks at
    operator: str
    values: frozenset[str]
    action: str  # "show" or "hide"

    def hides(self, value: str | None) -> bool:
        if self.operator == "in":
            matched = value in self.values
        elif self.operator in ("not_in", "nin"):
            matched = value not in self.values
        else:  # an operator we do not know never hides anything
            return False
        if self.action == "show":
            return not matched
        if self.action == "hide":
            return matched
        return False


@dataclass(frozen=True)
class Field:
    """One `algorithm_fields` element."""

    name: str  # add_opt1..add_opt4
    server_key: str
    text: str
    input_type: str  # select | text | textarea
    default_key: str | None
    options: dict[str, str]  # ordered as stored in the JSON string
    required: bool = True
    field_id: int = 0
    price_multipliers: dict[str, float] = dataclass_field(default_factory=dict)
    output_overrides: dict[str, dict[str, Any]] = dataclass_field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()
    registered_only: frozenset[str] = frozenset()  # keys MVSep offers to registered users only

    @property
    def is_text(self) -> bool:
        return self.input_type in _TEXT_INPUT_TYPES

    @property
    def fallback_key(self) -> str:
        """The key used when the user gave none: default_key, or the first option when there is no valid default."""
        if self.is_text:
            return self.default_key or ""
        if self.default_key is not None and self.default_key in self.options:
            return self.default_key
        return next(iter(self.options), "")


def _stem_label(stem: str) -> str:
    # Same style as the real `outputs` maps: "acoustic-guitar" -> "Acoustic guitar".
    return stem.replace("-", " ").replace("_", " ").strip().capitalize()


def _decode_json_text(value: Any, default: Any) -> Any:
    """Decode one of the JSON-in-a-string columns (outputs, output_variants…); null/invalid -> default."""
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return default


@dataclass(frozen=True)
class Algorithm:
    render_id: int
    name: str
    price_coefficient: float
    description: str
    audio_widget: str
    group: dict
    fields: tuple[Field, ...]
    raw: dict  # the MVSep element as served (without the additive keys); do not mutate

    @classmethod
    def from_element(cls, element: dict) -> Algorithm:
        """Build from one MVSep `app/algorithms` element (kept as `raw`, not copied)."""
        names_by_id = {f["id"]: f["name"] for f in element["algorithm_fields"]}
        return cls(
            render_id=int(element["render_id"]),
            name=element["name"],
            price_coefficient=float(element["price_coefficient"]),
            description=element.get("description") or "",
            audio_widget=element.get("audio_widget") or DEFAULT_SCOPE,
            group=element.get("algorithm_group") or {},
            fields=tuple(_parse_field(f, names_by_id) for f in element["algorithm_fields"]),
            raw=element,
        )

    @property
    def premium_only(self) -> bool:
        return self.price_coefficient > 1

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def hidden_fields(self, values_by_name: Mapping[str, str]) -> set[str]:
        """Names of fields that `conditions` hide for these values (a hidden field's value does not count)."""
        values = self._effective_by_name(values_by_name)
        return {f.name for f in self.fields if any(c.hides(values.get(c.depends_on)) for c in f.conditions)}

    def registered_only_chosen(self, values_by_name: Mapping[str, str]) -> list[tuple[Field, str]]:
        """The (field, key) pairs of these values ({add_optN: key}) that are for registered users only; fields
        hidden by a condition do not count."""
        values = self._effective_by_name(values_by_name)
        hidden = self.hidden_fields(values)
        return [
            (f, values[f.name])
            for f in self.fields
            if f.name not in hidden and values[f.name] in f.registered_only and not f.is_text
        ]

    def output_labels(self, chosen: Mapping[str, str]) -> dict[str, str]:
        """Stem key -> label for the chosen options ({server_key: key})."""
        by_name = self._effective_by_name({f.name: chosen[f.server_key] for f in self.fields if f.server_key in chosen})
        for extra in _EXTRA_OPTIONS:
            if extra.sep_type == self.render_id and by_name.get(extra.field_name) == extra.key:
                return dict(extra.outputs)
        by_server_key = {f.server_key: by_name[f.name] for f in self.fields}
        labels = self._base_outputs(by_server_key)
        hidden = self.hidden_fields(by_name)
        # Per-option overrides (e.g. 40: model 171 sets other stems, "Include fullness stems" adds four).
        for f in self.fields:
            override = f.output_overrides.get(by_name[f.name]) if f.name not in hidden else None
            if not override:
                continue
            outputs = override.get("outputs") or {}
            if override.get("mode") == "set":
                labels = dict(outputs)
            else:
                labels.update(outputs)
        return labels

    def price_multiplier(self, chosen_by_field_name: Mapping[str, str]) -> float:
        """Product of the `price_rules` multipliers that the chosen options ({add_optN: key}) trigger."""
        values = self._effective_by_name(chosen_by_field_name)
        hidden = self.hidden_fields(values)
        product = 1.0
        for f in self.fields:
            if f.name not in hidden:
                product *= f.price_multipliers.get(values[f.name], 1.0)
        return product

    def _effective_by_name(self, values_by_name: Mapping[str, str]) -> dict[str, str]:
        values = {f.name: f.fallback_key for f in self.fields}
        values.update({k: str(v) for k, v in values_by_name.items() if k in values and v is not None})
        return values

    def _base_outputs(self, by_server_key: Mapping[str, str]) -> dict[str, str]:
        variants = _decode_json_text(self.raw.get("output_variants"), {}) or {}
        for variant in variants.get("variants", []):
            match = variant.get("match") or {}
            if all(by_server_key.get(k) == str(v) for k, v in match.items()):
                return dict(variant.get("outputs") or {})
        outputs = _decode_json_text(self.raw.get("outputs"), None)
        if isinstance(outputs, dict) and outputs:
            return dict(outputs)
        stems = _decode_json_text(self.raw.get("output_stems"), None)
        if isinstance(stems, list):
            return {str(s): _stem_label(str(s)) for s in stems}
        return {}


# ---------------------------------------------------------------------------------------------- loading


def php_pretty_json(options: Mapping[str, str]) -> str:
    """Encode an options map the way the MVSep dump stores it (PHP JSON_PRETTY_PRINT: 4 spaces, \\u escapes,
    escaped slashes)."""
    if not options:
        return "{}"
    # "/" only occurs inside JSON strings, so escaping it on the encoded text is safe.
    return json.dumps(dict(options), indent=4, ensure_ascii=True).replace("/", "\\/")


def _read_data_file(name: str) -> list[dict]:
    text = (importlib.resources.files("openmvsep") / "catalog_data" / name).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"catalog_data/{name} must hold a JSON array")
    return data


def _add_extra_options(elements: list[dict]) -> None:
    for extra in _EXTRA_OPTIONS:
        element = next(e for e in elements if e["render_id"] == extra.sep_type)
        field_element = next(f for f in element["algorithm_fields"] if f["name"] == extra.field_name)
        options = json.loads(field_element["options"])
        options[extra.key] = extra.label
        field_element["options"] = php_pretty_json(options)


def _registered_only_keys(value: Any) -> frozenset[str]:
    """`registered_only_keys`: null in every field of the 2026 dump, so its shape is not known from MVSep's data;
    a list of keys (or the JSON text of one, like the other JSON-in-a-string columns) is read, an object's keys
    count, and anything else is no key."""
    decoded = _decode_json_text(value, None)
    if isinstance(decoded, (str, int)):
        decoded = [decoded]
    if isinstance(decoded, (list, tuple, dict)):
        return frozenset(str(k) for k in decoded if isinstance(k, (str, int)))
    return frozenset()


def _parse_field(element: Mapping[str, Any], names_by_id: Mapping[int, str]) -> Field:
    overrides = _decode_json_text(element.get("output_overrides"), {}) or {}
    return Field(
        name=element["name"],
        server_key=element["server_key"],
        text=element["text"],
        input_type=element.get("input_type") or "select",
        default_key=element.get("default_key"),
        options={str(k): str(v) for k, v in json.loads(element.get("options") or "{}").items()},
        required=bool(element.get("required", 1)),
        field_id=element["id"],
        price_multipliers={
            str(r["option_key"]): float(r["value"])
            for r in element.get("price_rules") or []
            if r.get("mode") == "multiplier"
        },
        output_overrides={str(k): v for k, v in overrides.items()},
        conditions=tuple(
            Condition(
                depends_on=names_by_id[c["depends_on_field_id"]],
                operator=c.get("operator", "in"),
                values=frozenset(str(v) for v in c.get("value_json") or []),
                action=c.get("action", "show"),
            )
            for c in element.get("conditions") or []
            if c.get("depends_on_field_id") in names_by_id
        ),
        registered_only=_registered_only_keys(element.get("registered_only_keys")),
    )


@functools.lru_cache(maxsize=1)
def _load_algorithms() -> tuple[Algorithm, ...]:
    """Parse both data files once per process, in serving order (2026 dump first, then the extras)."""
    elements = [e for name in _DATA_FILES for e in _read_data_file(name)]
    _add_extra_options(elements)
    algorithms = tuple(Algorithm.from_element(e) for e in elements)
    render_ids = [a.render_id for a in algorithms]
    if len(set(render_ids)) != len(render_ids):
        raise ValueError("catalog_data holds a render_id twice")
    if not algorithms or not algorithms[0].fields:
        # ZF1/ZF2 crash on a list whose first element has no field (CONTRACT §2.6).
        raise ValueError("the first algorithm of the catalog must have at least one field")
    return algorithms


def all_algorithms() -> tuple[Algorithm, ...]:
    """Every algorithm of every scope, parsed once per process."""
    return _load_algorithms()


# ---------------------------------------------------------------------------------------------- catalog

RunnableSpec = Mapping[int, "Mapping[str, Collection[str]] | None"]
# (sep_type, key of its model_type field) -> (rank, published SDR): greater is preferred
OptionScore = Callable[[int, str], tuple[float, float]]
_UNSCORED = (0.0, -math.inf)


def normalise_scopes(scopes: Iterable[str] | str | None) -> frozenset[str]:
    """`scopes` query value(s) -> known scope names; comma lists allowed, unknown names ignored."""
    if scopes is None:
        scopes = ()
    elif isinstance(scopes, str):
        scopes = (scopes,)
    names = {part.strip() for item in scopes for part in str(item).split(",")}
    known = frozenset(names.intersection(SCOPES))
    return known or frozenset({DEFAULT_SCOPE})


@dataclass
class _Runnable:
    """What runs here at one moment: per sep_type and select field, the keys in stored order and best first."""

    allowed: dict[int, dict[str, tuple[str, ...]]]
    best: dict[int, dict[str, tuple[str, ...]]]
    listings: dict[frozenset[str], tuple[list[dict], bytes]] = dataclass_field(default_factory=dict)


class Catalog:
    def __init__(
        self, runnable: RunnableSpec, algorithms: Iterable[Algorithm] | None = None, *, score: OptionScore | None = None
    ) -> None:
        """`runnable`: sep_type -> {field name -> option keys this server can run}; a field not named accepts every
        key, None/{} = the whole algorithm runs; sep_types absent cannot run here. `score` ranks the runnable keys
        of a model_type field (the best is the default and the substitute); without it, and between equal scores,
        MVSep's default comes first, then the stored order."""
        if algorithms is None:
            algorithms = _load_algorithms()
        self._algorithms: dict[int, Algorithm] = {a.render_id: a for a in algorithms}
        self._source: Callable[[], tuple[RunnableSpec, OptionScore | None]] | None = None
        self._stamp_of: Callable[[], Hashable] = lambda: None
        self._stamp: Hashable = None
        self._recheck_seconds = 0.0
        self._checked_at = time.monotonic()
        self._state = self._build(runnable, score)

    @classmethod
    def load(cls, runnable: RunnableSpec, *, score: OptionScore | None = None) -> Catalog:
        return cls(runnable, _load_algorithms(), score=score)

    @classmethod
    def live(
        cls,
        source: Callable[[], tuple[RunnableSpec, OptionScore | None]],
        stamp: Callable[[], Hashable],
        recheck_seconds: float,
        algorithms: Iterable[Algorithm] | None = None,
    ) -> Catalog:
        """A catalog that asks `source` again when `stamp()` changes (looked at most every `recheck_seconds`):
        weights downloaded while the server runs become runnable without a restart."""
        first = stamp()
        runnable, score = source()
        catalog = cls(runnable, algorithms, score=score)
        catalog._source, catalog._stamp_of, catalog._stamp = source, stamp, first
        catalog._recheck_seconds = recheck_seconds
        return catalog

    def _current(self) -> _Runnable:
        if self._source is None:
            return self._state
        now = time.monotonic()
        if now - self._checked_at < self._recheck_seconds:
            return self._state
        self._checked_at = now
        stamp = self._stamp_of()  # before the source is read: a change while it is read is seen next time
        if stamp != self._stamp:
            try:
                runnable, score = self._source()
                self._state = self._build(runnable, score)
            except (ValueError, OSError):
                log.exception("the runnable options could not be read again; serving the previous ones")
            self._stamp = stamp
        return self._state

    def refresh(self) -> None:
        """Look for new weights now, whatever the recheck interval (tests, `models coverage`)."""
        self._checked_at = -math.inf
        self._current()

    def _build(self, runnable: RunnableSpec, score: OptionScore | None) -> _Runnable:
        allowed = {int(sep_type): self._runnable_keys(int(sep_type), spec or {}) for sep_type, spec in runnable.items()}
        best = {sep_type: self._ranked(sep_type, fields, score) for sep_type, fields in allowed.items()}
        return _Runnable(allowed, best)

    def _ranked(
        self, sep_type: int, fields: Mapping[str, tuple[str, ...]], score: OptionScore | None
    ) -> dict[str, tuple[str, ...]]:
        algorithm = self._algorithms[sep_type]
        out: dict[str, tuple[str, ...]] = {}
        for name, keys in fields.items():
            f = algorithm.field(name)
            assert f is not None  # _runnable_keys checked every name
            scored = score if score is not None and f.server_key == "model_type" else None

            def order(key: str, f: Field = f, scored: OptionScore | None = scored) -> tuple:
                rank, sdr = scored(sep_type, key) if scored is not None else _UNSCORED
                return (-rank, -sdr, key != f.fallback_key)

            out[name] = tuple(sorted(keys, key=order))  # stable: the stored order breaks the last ties
        return out

    def _runnable_keys(self, sep_type: int, spec: Mapping[str, Collection[str]]) -> dict[str, tuple[str, ...]]:
        """Per select field, the option keys that run here, in stored order. Bad specs fail loudly at start-up."""
        algorithm = self._algorithms.get(sep_type)
        if algorithm is None:
            raise ValueError(f"runnable names sep_type {sep_type}, which is not in the catalog")
        allowed: dict[str, tuple[str, ...]] = {}
        for field_name, keys in spec.items():
            f = algorithm.field(field_name)
            if f is None or f.is_text:
                raise ValueError(
                    f"runnable[{sep_type}] names {field_name!r}, which is not a select field of {algorithm.name}"
                )
            wanted = {str(k) for k in keys}
            unknown = wanted.difference(f.options)
            if unknown:
                raise ValueError(
                    f"runnable[{sep_type}][{field_name!r}] names unknown option keys "
                    f"{sorted(unknown)}; valid: {', '.join(f.options)}"
                )
            allowed[field_name] = tuple(k for k in f.options if k in wanted)
        for f in algorithm.fields:
            if not f.is_text and f.name not in allowed:
                allowed[f.name] = tuple(f.options)
        return allowed

    # -- questions about one algorithm

    def get(self, sep_type: int) -> Algorithm | None:
        return self._algorithms.get(sep_type)

    def algorithms(self) -> builtins.list[Algorithm]:
        """Every algorithm of every scope, in serving order."""
        return builtins.list(self._algorithms.values())

    def is_available(self, sep_type: int) -> bool:
        """Whether at least one option set of this algorithm runs here."""
        allowed = self._current().allowed.get(sep_type)
        return allowed is not None and all(allowed.values())

    def available_keys(self, sep_type: int, field_name: str) -> list[str]:
        """Option keys of a select field that run here ([] for text fields and for what cannot run)."""
        if not self.is_available(sep_type):
            return []
        return list(self._current().allowed[sep_type].get(field_name, ()))

    def best_keys(self, sep_type: int, field_name: str) -> builtins.list[str]:
        """`available_keys`, best first."""
        if not self.is_available(sep_type):
            return []
        return builtins.list(self._current().best[sep_type].get(field_name, ()))

    def runnable_sep_types(self) -> list[int]:
        allowed = self._current().allowed
        return sorted(s for s in allowed if self.is_available(s))

    # -- app/algorithms

    def list(self, scopes: Iterable[str] | str | None = None) -> list[dict]:
        """Elements of the given scopes, as served. The same list object is returned each time: do not mutate it."""
        return self._listing(scopes)[0]

    def list_json(self, scopes: Iterable[str] | str | None = None) -> bytes:
        """`list(scopes)` serialised once (UTF-8 JSON), for the hot `app/algorithms` endpoint."""
        return self._listing(scopes)[1]

    # builtins.list: inside this class, `list` names the method above
    def _listing(self, scopes: Iterable[str] | str | None) -> tuple[builtins.list[dict], bytes]:
        key = normalise_scopes(scopes)
        state = self._current()
        cached = state.listings.get(key)
        if cached is None:
            elements = [self._served_element(a) for a in self._algorithms.values() if a.audio_widget in key]
            body = json.dumps(elements, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            cached = state.listings[key] = (elements, body)
        return cached

    def _served_element(self, algorithm: Algorithm) -> dict:
        """The stored element plus additive keys: `available_keys`, and `mvsep_default_key` keeping MVSep's
        default while `default_key` names what an empty value runs here (the best runnable key)."""
        element = copy.deepcopy(algorithm.raw)
        for field_element in element["algorithm_fields"]:
            f = algorithm.field(field_element["name"])
            assert f is not None  # the element's own fields
            field_element["available_keys"] = self.available_keys(algorithm.render_id, f.name)
            field_element["mvsep_default_key"] = field_element.get("default_key")
            if not f.is_text and self.is_available(algorithm.render_id):
                field_element["default_key"] = self.default_key(algorithm.render_id, f)
        element["is_available"] = self.is_available(algorithm.render_id)
        return element

    # -- separation/create

    def default_key(self, sep_type: int, f: Field) -> str:
        """What an empty value means: the best key that runs here (MVSep's default_key when nothing runs)."""
        if f.is_text or not self.is_available(sep_type):
            return f.fallback_key
        best = self._current().best[sep_type].get(f.name, ())
        return best[0] if best else f.fallback_key

    def resolve(self, sep_type: int, form: Mapping[str, Any], *, substitute: bool = False) -> Choice:
        """Form fields add_opt1..4 -> the choice of every field of the algorithm (option key or free text).

        Lenient as MVSep clients need (CONTRACT §1.3): fields the algorithm lacks are ignored, empty values take the
        default, and fields hidden by a condition take their default whatever was sent. With `substitute`, a valid
        key that cannot run here is replaced by the field's best runnable key; the choice remembers what was asked
        (an empty value asks for MVSep's default), so that the job discloses it.
        """
        algorithm = self._require(sep_type)
        values: dict[str, str] = {}
        requested: dict[str, str] = {}
        errors: dict[str, OptionError] = {}
        for f in algorithm.fields:
            given = form.get(f.name)
            text = "" if given is None else str(given).strip()
            if f.is_text:
                values[f.name] = text or f.fallback_key
                if len(text) > MAX_TEXT_CHARS:
                    errors[f.name] = OptionError(
                        f"{f.name} ({f.server_key}) is too long: {len(text)} characters, at most {MAX_TEXT_CHARS}."
                    )
                elif f.required and not values[f.name]:
                    errors[f.name] = OptionError(
                        f"{f.name} ({f.server_key}: {f.text}) is required for {algorithm.name}."
                    )
            elif not text:
                values[f.name] = self.default_key(sep_type, f)
                requested[f.name] = f.fallback_key
            elif text in f.options:
                values[f.name] = requested[f.name] = text
            else:
                values[f.name] = self.default_key(sep_type, f)
                errors[f.name] = OptionError(
                    f"Invalid value {text!r} for {f.name} ({f.server_key}). Valid keys: {', '.join(f.options)}"
                )
        if substitute and self.is_available(sep_type):
            allowed = self._current().allowed[sep_type]
            for name in [n for n, key in values.items() if n in allowed and key not in allowed[n]]:
                field = algorithm.field(name)
                assert field is not None
                values[name] = self.default_key(sep_type, field)
        for name in algorithm.hidden_fields(values):
            hidden = algorithm.field(name)
            assert hidden is not None  # hidden_fields names fields of this algorithm
            values[name] = self.default_key(sep_type, hidden)
            errors.pop(name, None)
            requested.pop(name, None)  # a hidden field's value does not count: nothing was asked of it
        if errors:
            raise next(iter(errors.values()))
        return self._choice(algorithm, values, self._substituted(sep_type, values, requested))

    def _substituted(self, sep_type: int, values: Mapping[str, str], requested: Mapping[str, str]) -> dict[str, str]:
        """Field -> the key asked for, where another runs in its place because this one cannot run here."""
        allowed = self._current().allowed.get(sep_type, {})
        return {
            name: key
            for name, key in requested.items()
            if key != values[name] and name in allowed and key not in allowed[name]
        }

    def choice(self, sep_type: int, keys: Mapping[str, str]) -> Choice:
        """The choice a job stored ({server_key: key}), with the catalog's labels."""
        algorithm = self._require(sep_type)
        return self._choice(
            algorithm, {f.name: str(keys[f.server_key]) for f in algorithm.fields if f.server_key in keys}
        )

    @staticmethod
    def _choice(
        algorithm: Algorithm, values_by_name: Mapping[str, str], requested: Mapping[str, str] | None = None
    ) -> Choice:
        requested = requested or {}
        return Choice(
            algorithm.render_id,
            tuple(
                Chosen(
                    f.name,
                    f.server_key,
                    values_by_name[f.name],
                    f.options.get(values_by_name[f.name], ""),
                    requested.get(f.name),
                )
                for f in algorithm.fields
                if f.name in values_by_name
            ),
        )

    def unavailable_reason(self, choice: Choice) -> str | None:
        """None when this server can run the choice; otherwise a sentence for the user."""
        sep_type = choice.sep_type
        algorithm = self.get(sep_type)
        if algorithm is None:
            return f"Separation type {sep_type} does not exist."
        if not self.is_available(sep_type):
            return f"{algorithm.name} (sep_type {sep_type}) has no engine on this server yet."
        allowed = self._current().allowed[sep_type]
        by_name = {f.name: str(choice[f.server_key]) for f in algorithm.fields if f.server_key in choice}
        hidden = algorithm.hidden_fields(by_name)
        refused = [
            f
            for f in algorithm.fields
            if not f.is_text and f.name in by_name and f.name not in hidden and by_name[f.name] not in allowed[f.name]
        ]
        if not refused:
            return None
        what = ", ".join(f"{f.server_key}={by_name[f.name]}" for f in refused)
        runnable_here = "; ".join(
            f"{f.server_key}=" + ", ".join(f"{k} ({f.options[k]})" for k in allowed[f.name]) for f in refused
        )
        return (
            f"{algorithm.name} with {what} cannot run on this server: its model weights are not installed. "
            f"Runnable here: {runnable_here}."
        )

    def _require(self, sep_type: int) -> Algorithm:
        algorithm = self.get(sep_type)
        if algorithm is None:
            raise OptionError(f"Separation type {sep_type} does not exist.")
        return algorithm
