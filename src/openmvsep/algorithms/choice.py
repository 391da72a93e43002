"""One user's choice of an algorithm's options, as one value.

The catalog makes it from a create form (`Catalog.resolve`) or from a stored job (`Catalog.choice`); recipes,
pricing, file naming and the weights lookup all read it, each in the spelling it needs:

- as a mapping, server key -> chosen key (`choice["model_type"] == "4"`): what a job row stores;
- `by_field()`, form field -> key (`{"add_opt1": "4"}`): what the catalog's price rules and conditions name;
- `option("model_type")` -> `"40:4"`: how the weights registry names what an entry serves;
- `labels()`, server key -> the catalog's text for the chosen key: what people read;
- `substitutions()`, form field -> {requested, used}: the fields where this server runs another option than the
  one asked for (explicitly, or by MVSep's default when the field was left empty), because it cannot run that one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Chosen:
    """One field's choice."""

    field: str  # the form's name of the field: add_opt1..add_opt4
    server_key: str  # the job's name of it: model_type, extract_type, ...
    key: str  # the chosen option key (or the free text of a text field)
    label: str = ""  # the catalog's text for that key ("" for free text)
    requested: str | None = None  # the key asked for, when this server runs `key` in its place


@dataclass(frozen=True, eq=False)
class Choice(Mapping[str, str]):
    """sep_type and every field's choice; reads as {server_key: key}."""

    sep_type: int
    fields: tuple[Chosen, ...] = ()

    @classmethod
    def of(cls, sep_type: int, keys: Mapping[str, str] | None = None) -> Choice:
        """A choice from bare keys (server key -> key), without form names or labels: for callers that name
        options directly (the engine's tests, `openmvsep infer --sep-type`)."""
        return cls(
            sep_type, tuple(Chosen(server_key, server_key, str(key)) for server_key, key in (keys or {}).items())
        )

    def __getitem__(self, server_key: str) -> str:
        for chosen in self.fields:
            if chosen.server_key == server_key:
                return chosen.key
        raise KeyError(server_key)

    def __iter__(self) -> Iterator[str]:
        return (chosen.server_key for chosen in self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def option(self, server_key: str = "model_type") -> str:
        """`SEP_TYPE:KEY`, the registry's name for the model that serves this choice of `server_key`."""
        return f"{self.sep_type}:{self.get(server_key, '')}"

    def by_field(self) -> dict[str, str]:
        return {chosen.field: chosen.key for chosen in self.fields}

    def labels(self) -> dict[str, str]:
        return {chosen.server_key: chosen.label for chosen in self.fields}

    def substitutions(self) -> dict[str, dict[str, str]]:
        """Form field -> {"requested": key, "used": key}, for the fields served by a substitute."""
        return {
            chosen.field: {"requested": chosen.requested, "used": chosen.key}
            for chosen in self.fields
            if chosen.requested is not None and chosen.requested != chosen.key
        }

    def as_dict(self) -> dict[str, str]:
        """What a job row stores."""
        return dict(self.items())
