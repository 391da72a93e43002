"""Model configs in the reference implementation's YAML (with `!!python/tuple` tags), as attribute dicts.

Unknown keys are kept and ignored by whoever does not need them, so configs of newer community models
load as long as the keys a family needs are there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config that cannot describe a runnable model; the message says which key is wrong."""


class Config(dict):
    """A dict whose keys also read as attributes (`config.model.dim`), recursively."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    @classmethod
    def wrap(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return cls({k: cls.wrap(v) for k, v in value.items()})
        if isinstance(value, list):
            return [cls.wrap(v) for v in value]
        return value


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader plus the one Python tag the public configs use."""


def _tuple(loader: yaml.SafeLoader, node: yaml.Node) -> tuple:
    return tuple(loader.construct_sequence(node, deep=True))


_ConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple)


def parse_config(text: str) -> Config:
    try:
        data = yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"the model config is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError("the model config must be a mapping")
    return Config.wrap(data)


def load_config(path: str | Path) -> Config:
    return parse_config(Path(path).read_text())
