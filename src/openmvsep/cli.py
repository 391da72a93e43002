"""The `openmvsep` command. Every option also reads an OPENMVSEP_* environment variable (Settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from openmvsep.settings import Settings

app = typer.Typer(help="openmvsep: a self-hosted music source separation server that speaks the MVSep API.",
                  no_args_is_help=True)
user_app = typer.Typer(help="Accounts.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
news_app = typer.Typer(help="News shown by /api/app/news.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")
app.add_typer(news_app, name="news")

err = Console(stderr=True)


def settings_with(**overrides) -> Settings:  # noqa: ANN003
    """Settings from the environment, with the command line's explicit options on top."""
    base = Settings()
    given = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=given) if given else base


def _database(settings: Settings):  # noqa: ANN202
    from openmvsep.store.db import Database
    from openmvsep.store.migrate import upgrade

    upgrade(settings.effective_database_url)
    return Database(settings.effective_database_url)


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Address to listen on [env OPENMVSEP_HOST, default 127.0.0.1]"),
    port: Optional[int] = typer.Option(None, help="Port [env OPENMVSEP_PORT, default 8000]"),
    data_dir: Optional[Path] = typer.Option(None, help="Database and files [env OPENMVSEP_DATA_DIR, default ./data]"),
    workers: Optional[int] = typer.Option(None, help="Local worker processes [env OPENMVSEP_WORKERS, default 1]"),
    public_url: Optional[str] = typer.Option(None, help="Base of every URL in responses [env OPENMVSEP_PUBLIC_URL]"),
) -> None:
    """Serve the MVSep API (and run local workers)."""
    import uvicorn

    from openmvsep.api.app import create_app

    settings = settings_with(host=host, port=port, data_dir=data_dir, workers=workers, public_url=public_url)
    err.print(f"openmvsep serving on {settings.effective_public_url} (data in {settings.data_dir.resolve()}, "
              f"{settings.workers} worker(s))")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", access_log=False)


@user_app.command("create")
def user_create(
    email: str = typer.Option(..., help="Login e-mail"),
    password: str = typer.Option(..., help="Password (at least 8 characters)"),
    name: str = typer.Option("", help="Display name (default: the e-mail's local part)"),
    premium: bool = typer.Option(False, "--premium", help="Spend credits for the premium queue"),
    credits: int = typer.Option(0, help="Credits to grant"),
) -> None:
    """Create an account; its API token is printed alone on the last line."""
    from openmvsep.service import accounts
    from openmvsep.service.errors import ValidationFailed

    db = _database(Settings())
    try:
        with db.session() as s:
            user = accounts.create_user(s, email=email, password=password, name=name, credits=credits,
                                        premium=premium)
            token = user.api_token
    except ValidationFailed as e:
        for field, messages in e.fields.items():
            for m in messages:
                err.print(f"[red]{field}: {m}[/red]")
        raise typer.Exit(1) from None
    err.print(f"created {email}")
    print(token)


@user_app.command("list")
def user_list() -> None:
    """List accounts."""
    from sqlalchemy import select

    from openmvsep.store.models import User

    db = _database(Settings())
    table = Table("id", "email", "name", "credits", "premium", "api_token")
    with db.reader() as s:
        for u in s.scalars(select(User).order_by(User.id)):
            table.add_row(str(u.id), u.email, u.name, str(u.credits), "yes" if u.premium_enabled else "no", u.api_token)
    Console().print(table)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database to the newest schema."""
    settings = Settings()
    _database(settings)
    err.print(f"database at {settings.effective_database_url} is up to date")


@news_app.command("add")
def news_add(
    title: str = typer.Option(..., help="Title"),
    text: str = typer.Option(..., help="Body (HTML allowed, as MVSep serves it)"),
    lang: str = typer.Option("en", help="Language code"),
) -> None:
    """Publish a news entry."""
    from openmvsep.service.news import add_news

    db = _database(Settings())
    with db.session() as s:
        item = add_news(s, title, text, lang)
        err.print(f"news {item.id} added")


if __name__ == "__main__":
    app()
