"""The `openmvsep` command. Every option also reads an OPENMVSEP_* environment variable (Settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from openmvsep.bootstrap import Services
from openmvsep.cli.client import client_app
from openmvsep.cli.common import err, open_services, settings_with
from openmvsep.cli.quality import qc_app
from openmvsep.settings import Settings

app = typer.Typer(
    help="openmvsep: a self-hosted music source separation server that speaks the MVSep API.", no_args_is_help=True
)
user_app = typer.Typer(help="Accounts.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
news_app = typer.Typer(help="News shown by /api/app/news.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")
app.add_typer(news_app, name="news")
models_app = typer.Typer(help="Model weights: the registry and the local cache.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(qc_app, name="qc")
app.add_typer(client_app, name="client")


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Address to listen on [env OPENMVSEP_HOST, default 127.0.0.1]"),
    port: Optional[int] = typer.Option(None, help="Port [env OPENMVSEP_PORT, default 8000]"),
    data_dir: Optional[Path] = typer.Option(None, help="Database and files [env OPENMVSEP_DATA_DIR, default ./data]"),
    workers: Optional[int] = typer.Option(None, help="Local worker processes [env OPENMVSEP_WORKERS, default 1]"),
    public_url: Optional[str] = typer.Option(None, help="Base of every URL in responses [env OPENMVSEP_PUBLIC_URL]"),
) -> None:
    """Serve the MVSep API and the web page (and run local workers)."""
    import logging

    import uvicorn

    from openmvsep.bootstrap.site import create_site
    from openmvsep.cli.doctor import safe_broker_url
    from openmvsep.logs import configure_logging, logging_config

    settings = settings_with(host=host, port=port, data_dir=data_dir, workers=workers, public_url=public_url)
    configure_logging(settings)
    runs = (
        f"{settings.workers} worker(s)"
        if settings.executor == "local"
        else f"celery executor on {safe_broker_url(settings.broker_url)}: start workers with `openmvsep worker`"
    )
    # A log line, not a print: with OPENMVSEP_LOG_FORMAT=json everything on stderr is JSON.
    logging.getLogger("openmvsep.cli").info(
        "openmvsep serving on %s (data in %s, %s)",
        settings.public_url or f"http://{settings.host}:{settings.port} (links follow each request's address)",
        settings.data_dir.resolve(),
        runs,
    )
    uvicorn.run(
        create_site(Services(settings)),
        host=settings.host,
        port=settings.port,
        log_config=logging_config(settings),
        access_log=settings.access_log,
        proxy_headers=False,  # the app applies them, from OPENMVSEP_TRUSTED_PROXIES (api/forwarded.py)
    )


@app.command()
def worker(
    gpus: Optional[str] = typer.Option(None, help="GPU ids, one process each, e.g. 0,1 [default: every GPU found]"),
    concurrency: int = typer.Option(1, help="Processes per GPU, or on the CPU when there is none"),
    broker_url: Optional[str] = typer.Option(None, help="redis://... or amqp://... [env OPENMVSEP_BROKER_URL]"),
    database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL [env OPENMVSEP_DATABASE_URL]"),
    storage_url: Optional[str] = typer.Option(None, help="Directory or s3://bucket/prefix [env OPENMVSEP_STORAGE_URL]"),
    data_dir: Optional[Path] = typer.Option(None, help="Weights, scratch, SQLite [env OPENMVSEP_DATA_DIR]"),
    loglevel: Optional[str] = typer.Option(None, help="Log level [env OPENMVSEP_LOG_LEVEL, default INFO]"),
) -> None:
    """Run Celery workers for the celery executor (`OPENMVSEP_EXECUTOR=celery`) until stopped."""
    import logging

    from openmvsep.cli.doctor import safe_broker_url
    from openmvsep.logs import configure_logging
    from openmvsep.runner.celery_pool import CeleryWorkerPool, plan_slots

    if concurrency < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--concurrency")
    settings = settings_with(
        broker_url=broker_url, database_url=database_url, storage_url=storage_url, data_dir=data_dir, log_level=loglevel
    )  # handed down to the workers with the rest
    if gpus is None and settings.device in ("auto", "cuda"):
        import torch

        found = torch.cuda.device_count()
        gpu_list = [str(i) for i in range(found)] or None
    else:
        gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    slots = plan_slots(gpu_list, concurrency)
    configure_logging(settings)
    logging.getLogger("openmvsep.cli").info(
        "openmvsep worker: %d process(es) on %s, queue %s, %s",
        len(slots),
        safe_broker_url(settings.broker_url),
        settings.celery_queue,
        f"GPUs {','.join(gpu_list)}" if gpu_list else "CPU",
    )
    # The API processes own the schema; a worker only claims work in it.
    CeleryWorkerPool(settings, slots, loglevel=settings.log_level).run(Services(settings).db)


@app.command("doctor")
def doctor_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (for scripts)"),
    timeout: float = typer.Option(3.0, help="Seconds to wait for each server"),
) -> None:
    """Check what this machine is configured to use and whether it answers; exits 1 if a check fails."""
    import json

    from pydantic import ValidationError
    from rich.markup import escape

    from openmvsep.cli.doctor import FAIL, WARN, failed, run_checks

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
    admin: bool = typer.Option(False, "--admin", help="May use the /admin pages"),
) -> None:
    """Create an account; its API token is printed alone on the last line."""
    from openmvsep.service.errors import ValidationFailed

    services = open_services()
    try:
        token = services.accounts.create(
            email=email, password=password, name=name, credits=credits, premium=premium
        ).api_token
    except ValidationFailed as e:
        for field, messages in e.fields.items():
            for m in messages:
                err.print(f"[red]{field}: {m}[/red]")
        raise typer.Exit(1) from None
    if admin:
        services.accounts.set_admin(email, True)
    err.print(f"created {email}")
    print(token)


@user_app.command("admin")
def user_admin(
    email: str = typer.Argument(..., help="The account's e-mail"),
    revoke: bool = typer.Option(False, "--revoke", help="Take the admin flag away instead"),
) -> None:
    """Let an account use the /admin pages (or, with --revoke, no longer)."""
    from openmvsep.service.errors import NotFound

    try:
        user = open_services().accounts.set_admin(email, not revoke)
    except NotFound as e:
        err.print(f"[red]{e.message}[/red]")
        raise typer.Exit(1) from None
    err.print(f"{user.email} is {'an admin' if user.is_admin else 'not an admin'}")


@user_app.command("invite")
def user_invite(
    email: str = typer.Option(..., help="The address that may register (OPENMVSEP_REGISTRATION=invite)"),
) -> None:
    """Let an address register through app/register when registration is by invitation."""
    from openmvsep.service.errors import ValidationFailed

    try:
        address = open_services().accounts.invite(email)
    except ValidationFailed as e:
        err.print(f"[red]{e.message}[/red]")
        raise typer.Exit(1) from None
    err.print(f"invited {address}")


@user_app.command("list")
def user_list() -> None:
    """List accounts."""
    table = Table("id", "email", "name", "credits", "premium", "api_token")
    for u in open_services().accounts.all():
        table.add_row(str(u.id), u.email, u.name, str(u.credits), "yes" if u.premium_enabled else "no", u.api_token)
    Console().print(table)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database to the newest schema."""
    settings = Settings()
    open_services(settings, create=True)
    err.print(f"database at {settings.effective_database_url} is up to date")


@news_app.command("add")
def news_add(
    title: str = typer.Option(..., help="Title"),
    text: str = typer.Option(..., help="Body (HTML allowed, as MVSep serves it)"),
    lang: str = typer.Option("en", help="Language code"),
) -> None:
    """Publish a news entry."""
    item = open_services().news.add(title, text, lang)
    err.print(f"news {item.id} added")


def _registry():
    """The weights registry of this data directory (no database needed: weights live beside it)."""
    from openmvsep.bootstrap import Services

    settings = Settings()
    err.print(f"data directory: {settings.data_dir.resolve()}")
    return Services(settings).runtime.registry


@models_app.command("list")
def models_list(
    selector: Optional[str] = typer.Argument(None, help="NAME, SEP_TYPE or SEP_TYPE:OPTION"),
    as_json: bool = typer.Option(False, "--json", help="Every field of every entry, as JSON"),
) -> None:
    """Registered weights, what they serve, and whether they are here (fits 80 columns; --json has it all)."""
    import json

    from rich import box

    from openmvsep.engine.weights import WeightsError

    registry = _registry()
    try:
        entries = registry.select(selector)
    except WeightsError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        rows = [
            {
                "name": e.name,
                "serves": list(e.serves),
                "model_type": e.model_type,
                "filename": e.filename,
                "size": e.size,
                "sha256": e.sha256,
                "rank": e.rank,
                "sdr": e.sdr,
                "substitute": e.substitute,
                "licence": e.licence,
                "present": registry.is_present(e),
                "description": e.description,
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    # name and serves fold onto more lines rather than push the table past 80 columns
    table = Table(box=box.SIMPLE, pad_edge=False)
    table.add_column("name", overflow="fold", ratio=3)
    table.add_column("serves", overflow="fold", ratio=2)
    table.add_column("here", no_wrap=True)
    table.add_column("pin", no_wrap=True)
    table.add_column("licence", overflow="fold", ratio=2)
    for entry in entries:
        table.add_row(
            entry.name,
            " ".join(entry.serves) or "-",
            "yes" if registry.is_present(entry) else "no",
            "yes" if entry.sha256 else "no",
            entry.licence,
        )
    Console(width=min(Console().width, 80)).print(table)


@models_app.command("download")
def models_download(
    selector: Optional[str] = typer.Argument(None, help="NAME, SEP_TYPE or SEP_TYPE:OPTION (default: all)"),
    sep_type: Optional[int] = typer.Option(
        None, "--sep-type", help="The best public model of this sep_type (registry rank, then published SDR)"
    ),
    pin: bool = typer.Option(
        False, "--pin", help="Record the sha256 of an unpinned download in <data dir>/models.yaml"
    ),
) -> None:
    """Download (resuming) and verify weights. A running server sees them within seconds, without a restart."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from openmvsep.algorithms.preference import best_entries
    from openmvsep.engine.weights import WeightsError, pin_entry

    registry = _registry()
    failed = False
    try:
        if sep_type is not None:
            if selector:
                raise WeightsError("give either a NAME/SEP_TYPE selector or --sep-type, not both")
            entries = best_entries(registry, sep_type)[:1]
            if not entries:
                raise WeightsError(f"no public model in the weights registry serves sep_type {sep_type}")
        else:
            entries = registry.select(selector)
    except WeightsError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    for entry in entries:
        if registry.members(entry):  # a bag has no file of its own; its members come next in the selection
            continue
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err,
        ) as bar:
            task = bar.add_task(entry.filename, total=entry.size)
            try:
                path = registry.download(
                    entry, progress=lambda done, total, task=task: bar.update(task, completed=done, total=total)
                )
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
            err.print(
                f"{entry.name}: {path} is not pinned; it will not load until you run "
                f"`openmvsep models download {entry.name} --pin` (trusting this download) or add its sha256"
            )
    if failed:
        raise typer.Exit(1)


@models_app.command("coverage")
def models_coverage(as_json: bool = typer.Option(False, "--json", help="The report as JSON")) -> None:
    """Per sep_type of MVSep's catalog: runs exactly, runs by a labelled substitute, would run after
    `models download`, or has no public model; with each group's share of the catalog's usage."""
    import json

    from rich import box

    from openmvsep.bootstrap import Services
    from openmvsep.service.coverage import GROUPS, measure

    settings = Settings()
    err.print(f"data directory: {settings.data_dir.resolve()}")
    report = measure(Services(settings).runtime)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
        return
    console = Console(width=min(Console().width, 80))
    table = Table(box=box.SIMPLE, pad_edge=False)
    table.add_column("sep", justify="right", no_wrap=True)
    table.add_column("algorithm", overflow="fold", ratio=1)
    table.add_column("runs", no_wrap=True)
    table.add_column("usage", justify="right", no_wrap=True)
    order = {group: i for i, group in enumerate(GROUPS)}
    for row in sorted(report.sep_types, key=lambda r: (order[r.group], -r.usage)):
        table.add_row(str(row.sep_type), row.name, row.group, str(row.usage))
    console.print(table)
    totals = Table("group", "sep_types", "share of usage", box=box.SIMPLE, pad_edge=False)
    for group, total in report.totals().items():
        totals.add_row(group, str(int(total["sep_types"])), f"{100 * total['usage_share']:.1f} %")
    console.print(totals)


@models_app.command("verify")
def models_verify(selector: Optional[str] = typer.Argument(None, help="NAME, SEP_TYPE or SEP_TYPE:OPTION")) -> None:
    """Check present weights against their pinned sha256."""
    from openmvsep.engine.weights import WeightsError

    registry = _registry()
    bad = False
    for entry in registry.select(selector):
        if registry.members(entry):  # a bag: its members are checked on their own
            continue
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
    model_type: Optional[str] = typer.Option(
        None, help="bs_roformer, mel_band_roformer, mdx23c, scnet, htdemucs, demucs_v2"
    ),
    config: Optional[Path] = typer.Option(None, help="The model's YAML config"),
    checkpoint: Optional[Path] = typer.Option(None, help=".ckpt/.th/.pth/.safetensors"),
    sha256: Optional[str] = typer.Option(None, help="Pin for a pickled checkpoint (required to load one)"),
    sep_type: Optional[int] = typer.Option(None, help="Use the registry's model for this MVSep sep_type instead"),
    opt1: Optional[str] = typer.Option(None, help="With --sep-type: the add_opt1 key (model)"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1, or auto"),
    precision: str = typer.Option("auto", help="auto (bf16 on CPUs with bf16 units, else fp32), fp32, fp16 or bf16"),
    batch_size: int = typer.Option(0, help="Chunks per model call (0: one on CPU, four on a GPU)"),
    overlap: Optional[int] = typer.Option(None, help="Overlap count (default: the config's inference.num_overlap)"),
    tta: bool = typer.Option(False, help="Average with channel-swapped and polarity-inverted passes"),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (pays off on long inputs)"),
    segment_seconds: float = typer.Option(300.0, help="Long inputs go through in segments this long (bounded memory)"),
) -> None:
    """Separate files locally, no server: one float32 WAV per instrument at the model's rate."""
    from rich.progress import Progress, TaskID

    from openmvsep.engine import audio
    from openmvsep.engine.checkpoints import CheckpointError
    from openmvsep.engine.config import ConfigError
    from openmvsep.engine.longform import separate_file
    from openmvsep.engine.separator import load_model
    from openmvsep.engine.weights import WeightsError

    try:
        if sep_type is not None:
            registry = _registry()
            entry = (
                registry.serving(f"{sep_type}:{opt1}")
                if opt1 is not None
                else next(iter(registry.select(str(sep_type))), None)
            )
            if entry is None:
                raise WeightsError(
                    f"no registered model serves sep_type {sep_type}" + (f" option {opt1}" if opt1 else "")
                )
            model_type, config, checkpoint, sha256 = (
                entry.model_type,
                entry.config,
                registry.require(entry),
                sha256 or entry.sha256,
            )
        if not (model_type and config and checkpoint):
            raise typer.BadParameter("give --model-type, --config and --checkpoint, or --sep-type")
        loaded = load_model(
            model_type,
            config,
            checkpoint,
            sha256=sha256,
            device=device,
            compile=compile_model,
            cache_dir=Settings().data_dir / "weights" / "safetensors-cache",
        )
    except (WeightsError, CheckpointError, ConfigError, OSError) as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    output_dir.mkdir(parents=True, exist_ok=True)
    failed = False
    for path in inputs:
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(path.name, total=None)

            # Functions, not lambdas with bound defaults: mypy cannot infer the type of such a lambda.
            def output_path(stem: str, p: Path = path) -> Path:
                return output_dir / f"{p.stem}_{stem}.wav"

            def on_segment(done: int, total: int, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            try:
                written = separate_file(
                    loaded,
                    path,
                    output_path,
                    segment_seconds=segment_seconds,
                    on_segment=on_segment,
                    batch_size=batch_size,
                    precision=precision,
                    num_overlap=overlap,
                    tta=tta,
                )
            except (audio.AudioError, OSError) as e:
                err.print(f"[red]{path}: {e}[/red]")
                failed = True
                continue
        for target in written.values():
            err.print(f"wrote {target}")
    if failed:
        raise typer.Exit(1)
