"""What every command shares: the error console, settings with the command line on top, and the services."""

from __future__ import annotations

import typer
from rich.console import Console

from openmvsep.bootstrap import NoDatabase, Services
from openmvsep.settings import Settings

err = Console(stderr=True, soft_wrap=True)  # whole lines: scripts and tests grep them


def settings_with(**overrides) -> Settings:
    """Settings from the environment, with the command line's explicit options on top."""
    base = Settings()
    given = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=given) if given else base


def open_services(settings: Settings | None = None, *, create: bool = False) -> Services:
    """The composition root for a command, after saying which data directory it works on (an admin command run
    from the wrong folder must not quietly work on another server's data, or make a new one)."""
    settings = settings or Settings()
    err.print(f"data directory: {settings.data_dir.resolve()}")
    try:
        return Services.open(settings, create=create)
    except NoDatabase as e:
        err.print(f"[red]{e.message}[/red]")
        raise typer.Exit(1) from None
