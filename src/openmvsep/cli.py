"""The `openmvsep` command. Every option also reads an OPENMVSEP_* environment variable (Settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from openmvsep.cli_quality import qc_app
from openmvsep.settings import Settings

app = typer.Typer(help="openmvsep: a self-hosted music source separation server that speaks the MVSep API.",
                  no_args_is_help=True)
user_app = typer.Typer(help="Accounts.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
news_app = typer.Typer(help="News shown by /api/app/news.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")
app.add_typer(news_app, name="news")
models_app = typer.Typer(help="Model weights: the registry and the local cache.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(qc_app, name="qc")

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
    from openmvsep.doctor import safe_broker_url

    settings = settings_with(host=host, port=port, data_dir=data_dir, workers=workers, public_url=public_url)
    runs = (f"{settings.workers} worker(s)" if settings.executor == "local"
            else f"celery executor on {safe_broker_url(settings.broker_url)}: start workers with `openmvsep worker`")
    err.print(f"openmvsep serving on {settings.effective_public_url} (data in {settings.data_dir.resolve()}, {runs})")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", access_log=False)


@app.command()
def worker(
    gpus: Optional[str] = typer.Option(None, help="GPU ids, one process each, e.g. 0,1 [default: every GPU found]"),
    concurrency: int = typer.Option(1, help="Processes per GPU, or on the CPU when there is none"),
    broker_url: Optional[str] = typer.Option(None, help="redis://... or amqp://... [env OPENMVSEP_BROKER_URL]"),
    database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL [env OPENMVSEP_DATABASE_URL]"),
    storage_url: Optional[str] = typer.Option(None, help="Directory or s3://bucket/prefix [env OPENMVSEP_STORAGE_URL]"),
    data_dir: Optional[Path] = typer.Option(None, help="Weights, scratch, SQLite [env OPENMVSEP_DATA_DIR]"),
    loglevel: str = typer.Option("INFO", help="Celery log level"),
) -> None:
    """Run Celery workers for the celery executor (`OPENMVSEP_EXECUTOR=celery`) until stopped."""
    import logging

    from openmvsep.doctor import safe_broker_url
    from openmvsep.runner.celery_pool import CeleryWorkerPool, plan_slots

    if concurrency < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--concurrency")
    settings = settings_with(broker_url=broker_url, database_url=database_url, storage_url=storage_url,
                             data_dir=data_dir)
    if gpus is None and settings.device in ("auto", "cuda"):
        import torch

        found = torch.cuda.device_count()
        gpu_list = [str(i) for i in range(found)] or None
    else:
        gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    slots = plan_slots(gpu_list, concurrency)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    err.print(f"openmvsep worker: {len(slots)} process(es) on {safe_broker_url(settings.broker_url)}, "
              f"queue {settings.celery_queue}"
              + (f", GPUs {','.join(gpu_list)}" if gpu_list else ", CPU"))
    CeleryWorkerPool(settings, slots, loglevel=loglevel).run()


@app.command()
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (for scripts)"),
    timeout: float = typer.Option(3.0, help="Seconds to wait for each server"),
) -> None:
    """Check what this machine is configured to use and whether it answers; exits 1 if a check fails."""
    import json

    from pydantic import ValidationError
    from rich.markup import escape

    from openmvsep.doctor import FAIL, WARN, failed, run_checks

    try:
        settings = Settings()
    except ValidationError as e:  # a malformed OPENMVSEP_* variable is the first thing to fix
        err.print(f"[red]settings: {escape(str(e))}[/red]")
        raise typer.Exit(1) from None
    checks = run_checks(settings, timeout=timeout)
    if as_json:
        print(json.dumps({"ok": not failed(checks), "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        colour = {FAIL: "red", WARN: "yellow"}
        table = Table("check", "status", "detail")
        for c in checks:
            table.add_row(c.name, f"[{colour.get(c.status, 'green')}]{c.status}[/]", escape(c.detail))
        Console().print(table)
    if failed(checks):
        raise typer.Exit(1)


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


def _registry():  # noqa: ANN202
    from openmvsep.engine.weights import WeightsRegistry

    return WeightsRegistry.for_data_dir(Settings().data_dir)


@models_app.command("list")
def models_list(selector: Optional[str] = typer.Argument(None, help="NAME, SEP_TYPE or SEP_TYPE:OPTION")) -> None:
    """Registered weights, what they serve, and whether they are here."""
    from openmvsep.engine.weights import WeightsError

    registry = _registry()
    try:
        entries = registry.select(selector)
    except WeightsError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    table = Table("name", "serves", "model type", "file", "pinned", "present")
    for e in entries:
        table.add_row(e.name, ", ".join(e.serves) or "-", e.model_type, e.filename, "yes" if e.sha256 else "no",
                      "yes" if registry.is_present(e) else "no")
    Console().print(table)


@models_app.command("download")
def models_download(
    selector: Optional[str] = typer.Argument(None, help="NAME, SEP_TYPE or SEP_TYPE:OPTION (default: all)"),
    pin: bool = typer.Option(False, "--pin", help="Record the sha256 of an unpinned download in <data dir>/models.yaml"),
) -> None:
    """Download (resuming) and verify weights."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from openmvsep.engine.weights import WeightsError, pin_entry

    registry = _registry()
    failed = False
    try:
        entries = registry.select(selector)
    except WeightsError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    for entry in entries:
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      console=err) as bar:
            task = bar.add_task(entry.filename, total=entry.size)
            try:
                path = registry.download(entry, progress=lambda done, total: bar.update(task, completed=done,
                                                                                        total=total))
            except WeightsError as e:
                err.print(f"[red]{e}[/red]")
                failed = True
                continue
        if entry.sha256:
            err.print(f"{entry.name}: {path} (sha256 verified)")
        elif pin:
            digest = pin_entry(Settings().data_dir / "models.yaml", entry, path)
            err.print(f"{entry.name}: {path} pinned as sha256 {digest}")
        else:
            err.print(f"{entry.name}: {path} is not pinned; it will not load until you run "
                      f"`openmvsep models download {entry.name} --pin` (trusting this download) or add its sha256")
    if failed:
        raise typer.Exit(1)


@models_app.command("verify")
def models_verify(selector: Optional[str] = typer.Argument(None, help="NAME, SEP_TYPE or SEP_TYPE:OPTION")) -> None:
    """Check present weights against their pinned sha256."""
    from openmvsep.engine.weights import WeightsError

    registry = _registry()
    bad = False
    for entry in registry.select(selector):
        if not registry.is_present(entry):
            err.print(f"{entry.name}: not downloaded")
            continue
        try:
            digest = registry.verify(entry)
            err.print(f"{entry.name}: ok ({digest}{'' if entry.sha256 else ', not pinned'})")
        except WeightsError as e:
            err.print(f"[red]{entry.name}: {e}[/red]")
            bad = True
    if bad:
        raise typer.Exit(1)


@app.command()
def infer(
    inputs: list[Path] = typer.Argument(..., help="Audio files (anything ffmpeg reads)"),
    output_dir: Path = typer.Option(..., "-o", "--output-dir", help="Where <input stem>_<instrument>.wav go"),
    model_type: Optional[str] = typer.Option(None, help="bs_roformer, mel_band_roformer, mdx23c, scnet, htdemucs"),
    config: Optional[Path] = typer.Option(None, help="The model's YAML config"),
    checkpoint: Optional[Path] = typer.Option(None, help=".ckpt/.th/.pth/.safetensors"),
    sha256: Optional[str] = typer.Option(None, help="Pin for a pickled checkpoint (required to load one)"),
    sep_type: Optional[int] = typer.Option(None, help="Use the registry's model for this MVSep sep_type instead"),
    opt1: Optional[str] = typer.Option(None, help="With --sep-type: the add_opt1 key (model)"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1, or auto"),
    precision: str = typer.Option("fp32", help="fp32, fp16 or bf16"),
    batch_size: int = typer.Option(0, help="Chunks per model call (0: one on CPU, four on a GPU)"),
    overlap: Optional[int] = typer.Option(None, help="Overlap count (default: the config's inference.num_overlap)"),
    tta: bool = typer.Option(False, help="Average with channel-swapped and polarity-inverted passes"),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (pays off on long inputs)"),
    segment_seconds: float = typer.Option(300.0, help="Long inputs go through in segments this long (bounded memory)"),
) -> None:
    """Separate files locally, no server: one float32 WAV per instrument at the model's rate."""
    from rich.progress import Progress

    from openmvsep.engine import audio
    from openmvsep.engine.checkpoints import CheckpointError
    from openmvsep.engine.config import ConfigError
    from openmvsep.engine.longform import separate_file
    from openmvsep.engine.separator import load_model
    from openmvsep.engine.weights import WeightsError

    try:
        if sep_type is not None:
            registry = _registry()
            entry = registry.serving(f"{sep_type}:{opt1}") if opt1 is not None else next(
                iter(registry.select(str(sep_type))), None)
            if entry is None:
                raise WeightsError(f"no registered model serves sep_type {sep_type}"
                                   + (f" option {opt1}" if opt1 else ""))
            model_type, config, checkpoint, sha256 = (entry.model_type, entry.config, registry.require(entry),
                                                      sha256 or entry.sha256)
        if not (model_type and config and checkpoint):
            raise typer.BadParameter("give --model-type, --config and --checkpoint, or --sep-type")
        loaded = load_model(model_type, config, checkpoint, sha256=sha256, device=device, compile=compile_model,
                            cache_dir=Settings().data_dir / "weights" / "safetensors-cache")
    except (WeightsError, CheckpointError, ConfigError, OSError) as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    output_dir.mkdir(parents=True, exist_ok=True)
    failed = False
    for path in inputs:
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(path.name, total=None)
            try:
                written = separate_file(
                    loaded, path, lambda stem, p=path: output_dir / f"{p.stem}_{stem}.wav",
                    segment_seconds=segment_seconds,
                    on_segment=lambda done, total: bar.update(task, completed=done, total=total),
                    batch_size=batch_size, precision=precision, num_overlap=overlap, tta=tta)
            except (audio.AudioError, OSError) as e:
                err.print(f"[red]{path}: {e}[/red]")
                failed = True
                continue
        for target in written.values():
            err.print(f"wrote {target}")
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
