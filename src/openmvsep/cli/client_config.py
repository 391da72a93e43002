"""Where `openmvsep client` finds its server and token: the command line, then the environment, then a config file.

The file is TOML, at `--config PATH`, `$OPENMVSEP_CLIENT_CONFIG`, or the user's config folder
(`~/.config/openmvsep/client.toml` on Linux, as `click.get_app_dir` names it per system):

    server = "http://127.0.0.1:8000"
    token = "…"

The file's token goes only to the file's server: with another server named on the command line or in the
environment, a token must come from there too (a token for one server is never sent to another by accident).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_ENV = "OPENMVSEP_CLIENT_CONFIG"
SERVER_ENV = "OPENMVSEP_CLIENT_SERVER"
TOKEN_ENVS = ("OPENMVSEP_CLIENT_TOKEN", "MVSEP_API_TOKEN")
DEFAULT_SERVER = "https://mvsep.com"
KEYS = ("server", "token")


class ConfigError(Exception):
    """The config file cannot be used; the message says why and where."""


@dataclass(frozen=True)
class Remote:
    server: str
    token: str | None
    server_from: str  # "--server", an environment variable, the file's path, or "default"
    token_from: str | None


def default_path() -> Path:
    return Path(click.get_app_dir("openmvsep")) / "client.toml"


def config_path(given: Path | None) -> Path:
    """`--config`, else $OPENMVSEP_CLIENT_CONFIG, else the user's config folder."""
    if given is not None:
        return given
    env = os.environ.get(CONFIG_ENV)
    return Path(env).expanduser() if env else default_path()


def read(path: Path) -> dict[str, str]:
    """The file's settings; none when it does not exist."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not a readable TOML file ({e})") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; the file holds {' and '.join(KEYS)}")
    for key, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f'{path}: {key} must be a non-empty string (key = "value")')
    return {k: v.strip() for k, v in data.items()}


def _same_server(a: str, b: str) -> bool:
    def norm(url: str) -> str:
        url = url.strip().rstrip("/")
        return url[: -len("/api")] if url.endswith("/api") else url

    return norm(a) == norm(b)


def resolve(server_flag: str | None, token_flag: str | None, path: Path) -> Remote:
    """The server and token in effect. The flags were given on the command line; the environment and the file are
    read here (flag > environment > file > default)."""
    env_server = os.environ.get(SERVER_ENV) or None
    env_token_name = next((name for name in TOKEN_ENVS if os.environ.get(name)), None)
    saved = read(path)
    if server_flag:
        server, server_from = server_flag, "--server"
    elif env_server:
        server, server_from = env_server, SERVER_ENV
    elif "server" in saved:
        server, server_from = saved["server"], str(path)
    else:
        server, server_from = DEFAULT_SERVER, "default"
    token: str | None
    if token_flag:
        token, token_from = token_flag, "--token"
    elif env_token_name:
        token, token_from = os.environ[env_token_name], env_token_name
    elif "token" in saved and _same_server(saved.get("server", DEFAULT_SERVER), server):
        token, token_from = saved["token"], str(path)
    else:
        token, token_from = None, None
    return Remote(server, token, server_from, token_from)


def write(path: Path, **values: str) -> None:
    """Set `server` and/or `token` in the file, keeping what else it says; readable by its owner only (a token is a
    password)."""
    current = read(path)
    current.update({k: v for k, v in values.items() if v})
    path.parent.mkdir(parents=True, exist_ok=True)
    # TOML's basic strings share JSON's escapes, so json.dumps writes a valid TOML string.
    text = "".join(f"{key} = {json.dumps(current[key], ensure_ascii=False)}\n" for key in KEYS if key in current)
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    partial.replace(path)
