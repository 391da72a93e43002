"""`openmvsep client ...`: the Python client (openmvsep.client) on the command line, against any MVSep-compatible
server, mvsep.com included.

The server and token come from `--server`/`--token`, else the environment, else the config file (client_config.py).
Exit codes scripts can rely on are in client_exits.py (0 done, 1 refused, 2 usage, 3 failed, 4 unavailable).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.table import Table

from openmvsep.cli import client_exits as exits
from openmvsep.cli.client_batch import Batch, Slots, separate_all
from openmvsep.cli.client_config import (
    CONFIG_ENV,
    SERVER_ENV,
    TOKEN_ENVS,
    ConfigError,
    Remote,
    config_path,
    resolve,
    write,
)
from openmvsep.cli.client_progress import Board, describe
from openmvsep.client import MVSepClient, MVSepError, QcEntry

client_app = typer.Typer(
    help="Use a remote MVSep-compatible server (mvsep.com or openmvsep). Exit codes: 0 done, 1 the server refused, "
    "2 bad usage, 3 a separation or entry failed, 4 the server unavailable, 130 interrupted.",
    no_args_is_help=True,
)
qc_app = typer.Typer(help="The server's Quality Checker: submit an entry, read the leaderboard.", no_args_is_help=True)
client_app.add_typer(qc_app, name="qc")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)  # whole lines: scripts grep them

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac", ".aiff", ".aif", ".mp4", ".wma"}
SERVER = typer.Option(None, "--server", help=f"The server's base URL (else ${SERVER_ENV}, the config file, mvsep.com)")
TOKEN = typer.Option(None, "--token", help=f"API token (else ${TOKEN_ENVS[0]} or ${TOKEN_ENVS[1]}, the config file)")


@client_app.callback()
def main(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(
        None, "--config", help=f"The config file (else ${CONFIG_ENV}, else ~/.config/openmvsep/client.toml)"
    ),
) -> None:
    ctx.obj = config_path(config)


def _usage(message: str) -> typer.Exit:
    err.print(message, style="red", markup=False)
    return typer.Exit(exits.USAGE)


def _remote(ctx: typer.Context, server: str | None, token: str | None, *, need_token: bool = False) -> Remote:
    path = ctx.obj if isinstance(ctx.obj, Path) else config_path(None)
    try:
        remote = resolve(server, token, path)
    except ConfigError as e:
        raise _usage(str(e)) from None
    if need_token and not remote.token:
        raise _usage(
            f"No API token for {remote.server}: pass --token, set ${TOKEN_ENVS[0]}, or save one with "
            f"`openmvsep client config --server {remote.server} --token TOKEN --save` ({path})"
        )
    return remote


@contextmanager
def _answering() -> Iterator[None]:
    """A refusal prints the server's own words and exits with the code for what it means."""
    try:
        yield
    except MVSepError as e:
        err.print(e.message, style="red", markup=False)
        raise typer.Exit(exits.code_for(e)) from None


def _inputs(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise _usage(f"{path}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    by_folder: dict[str, Path] = {}
    for source in unique:
        other = by_folder.setdefault(source.stem, source)
        if other != source:
            raise _usage(f"{other} and {source} would share the output folder '{source.stem}': rename one")
    if not unique:
        raise _usage("No audio files among the inputs")
    return unique


# ---- separations ---------------------------------------------------------------------------------------------------


@client_app.command()
def separate(
    ctx: typer.Context,
    inputs: list[Path] = typer.Argument(..., help="Audio files, or folders of them"),
    sep_type: int = typer.Option(..., "--sep-type", help="The algorithm (sep_type of `client algorithms`)"),
    opt1: Optional[str] = typer.Option(None, "--opt1", help="add_opt1"),
    opt2: Optional[str] = typer.Option(None, "--opt2", help="add_opt2"),
    opt3: Optional[str] = typer.Option(None, "--opt3", help="add_opt3"),
    opt4: Optional[str] = typer.Option(None, "--opt4", help="add_opt4"),
    output_format: int = typer.Option(1, "--format", help="0 mp3, 1 wav, 2 flac, 3 m4a, 4 wav 32-bit, 5 flac 24-bit"),
    out_dir: Path = typer.Option(Path("separated"), "-o", "--out", help="Outputs go to OUT/<input name>/"),
    jobs: int = typer.Option(
        4, "--jobs", min=1, help="Jobs on the server at once, at most (fewer when the server allows fewer)"
    ),
    patience: float = typer.Option(
        600, "--patience", min=0, help="Seconds to keep trying while the server is unreachable or failing"
    ),
    poll: float = typer.Option(5.0, "--poll", min=0.05, help="Seconds between status checks"),
    plain: bool = typer.Option(False, "--plain", help="Plain lines instead of bars, also on a terminal"),
    server: Optional[str] = SERVER,
    token: Optional[str] = TOKEN,
) -> None:
    """Separate files, several at a time as the server allows; a second run skips what is already downloaded and
    picks up the jobs it started instead of paying again."""
    files = _inputs(inputs)
    remote = _remote(ctx, server, token, need_token=True)
    options: dict[str, Any] = {"add_opt1": opt1, "add_opt2": opt2, "add_opt3": opt3, "output_format": output_format}
    if opt4 is not None:
        options["add_opt4"] = opt4
    assert remote.token is not None
    batch = Batch(remote.server, remote.token, sep_type, options, out_dir, poll, patience, Slots(jobs))
    live = not plain and out.is_terminal and not out.is_dumb_terminal
    try:
        with Board(out, err, live=live) as board:
            code = separate_all(batch, files, board, jobs)
    except KeyboardInterrupt:
        err.print("Interrupted: the same command resumes where this run stopped", markup=False)
        raise typer.Exit(exits.INTERRUPTED) from None
    raise typer.Exit(code)


@client_app.command()
def status(
    ctx: typer.Context,
    hash_value: str = typer.Argument(..., metavar="HASH"),
    server: Optional[str] = SERVER,
    token: Optional[str] = TOKEN,
) -> None:
    """One separation's status (and its files when done). Exit 0 while it runs or when done, 3 when it failed."""
    remote = _remote(ctx, server, token)
    with _answering(), MVSepClient(remote.server, token=remote.token) as mv:
        job = mv.get(hash_value)
    out.print(describe(job) + (f": {job.message}" if job.message else ""), markup=False)
    for f in job.files:
        out.print(f"  {f.type}: {f.url}", markup=False)
    if job.status == "failed":
        raise typer.Exit(exits.FAILED)


@client_app.command()
def history(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, max=20),
    server: Optional[str] = SERVER,
    token: Optional[str] = TOKEN,
) -> None:
    """Your recent separations."""
    remote = _remote(ctx, server, token, need_token=True)
    with _answering(), MVSepClient(remote.server, token=remote.token) as mv:
        items = mv.history(limit=limit)
    table = Table("hash", "created", "algorithm", "files kept")
    for item in items:
        kept = f"{item.time_left} h" if item.job_exists and item.time_left is not None else "no"
        table.add_row(item.hash, item.created_at or "", item.algorithm or "", kept)
    out.print(table)


@client_app.command()
def cancel(
    ctx: typer.Context,
    hash_value: str = typer.Argument(..., metavar="HASH"),
    server: Optional[str] = SERVER,
    token: Optional[str] = TOKEN,
) -> None:
    """Cancel a separation that has not started (its credits are refunded)."""
    remote = _remote(ctx, server, token, need_token=True)
    with _answering(), MVSepClient(remote.server, token=remote.token) as mv:
        answer = mv.cancel(hash_value)
    out.print(answer.message or "cancelled", markup=False)


@client_app.command()
def algorithms(
    ctx: typer.Context,
    search: Optional[str] = typer.Option(None, help="Only names containing this text"),
    runnable: bool = typer.Option(False, "--runnable", help="Only what the server can run now (openmvsep says so)"),
    server: Optional[str] = SERVER,
    token: Optional[str] = TOKEN,
) -> None:
    """The server's algorithms: sep_type, name and options."""
    remote = _remote(ctx, server, token)
    with _answering(), MVSepClient(remote.server, token=remote.token) as mv:
        found = mv.algorithms()
    table = Table("sep_type", "name", "options")
    for algo in sorted(found, key=lambda a: a.render_id):
        if search and search.lower() not in algo.name.lower():
            continue
        # openmvsep adds `is_available`; a server without it (mvsep.com) runs every active algorithm
        if runnable and not algo.raw.get("is_available", algo.is_active):
            continue
        opts = "; ".join(f"{f.name}: {', '.join(list(f.options)[:8])}" for f in algo.fields if f.options)
        table.add_row(str(algo.render_id), algo.name, opts)
    out.print(table)


@client_app.command("config")
def show_config(
    ctx: typer.Context,
    save: bool = typer.Option(False, "--save", help="Write the given --server and --token into the config file"),
    server: Optional[str] = SERVER,
    token: Optional[str] = TOKEN,
) -> None:
    """The server and token in effect, and where each comes from; with --save, keep the given ones in the file."""
    path = ctx.obj if isinstance(ctx.obj, Path) else config_path(None)
    if save:
        if not (server or token):
            raise _usage("--save writes the --server and --token given with it; none was")
        try:
            write(path, server=server or "", token=token or "")
        except ConfigError as e:
            raise _usage(str(e)) from None
        out.print(f"saved in {path}", markup=False)
    remote = _remote(ctx, server, token)
    out.print(f"config file: {path}" + ("" if path.is_file() else " (none)"), markup=False)
    out.print(f"server: {remote.server} (from {remote.server_from})", markup=False)
    shown = f"{remote.token[:4]}… (from {remote.token_from})" if remote.token else "none"
    out.print(f"token: {shown}", markup=False)


# ---- Quality Checker -----------------------------------------------------------------------------------------------


def _metrics_table(entries: list[QcEntry], metrics: list[str]) -> Table:
    table = Table("id", "algorithm", *metrics)
    for entry in entries:
        table.add_row(str(entry.id), entry.algo_name or "", *(_metric(entry.metrics.get(m)) for m in metrics))
    return table


def _metric(value: Any) -> str:
    if isinstance(value, dict):  # openmvsep: {metric: value} per stem
        value = value.get("sdr")
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


@qc_app.command("submit")
def qc_submit(
    ctx: typer.Context,
    archive: Path = typer.Argument(..., exists=True, dir_okay=False, help="The zip of your separated stems"),
    name: str = typer.Option(..., "--name", help="The algorithm's name on the leaderboard"),
    password: str = typer.Option(..., "--password", help="Needed to delete the entry later"),
    text: str = typer.Option("", "--text", help="A description"),
    dataset_type: int = typer.Option(0, "--dataset-type", help="The dataset the stems are of"),
    ensemble: bool = typer.Option(False, "--ensemble", help="The entry is an ensemble of models"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the scores"),
    poll: float = typer.Option(5.0, "--poll", min=0.05, help="Seconds between checks"),
    server: Optional[str] = SERVER,
    token: Optional[str] = TOKEN,
) -> None:
    """Submit a zip of separated stems to the Quality Checker and print its scores (exit 3 if scoring fails)."""
    remote = _remote(ctx, server, token, need_token=True)
    out.print(f"uploading {archive.name} ({decimal(archive.stat().st_size)})", markup=False)
    with _answering(), MVSepClient(remote.server, token=remote.token) as mv:
        added = mv.qc_add(archive, name, text, password, dataset_type=dataset_type, ensemble=ensemble)
        out.print(f"entry {added.id}: {added.link or 'submitted'}", markup=False)
        if not wait or added.id is None:
            return
        said = None
        while True:
            entry = mv.qc_entry(added.id)
            state = {0: "queued", 1: "scoring"}.get(entry.proc if entry.proc is not None else -1, "")
            if state and state != said:
                out.print(f"entry {added.id}: {state}", markup=False)
                said = state
            if entry.failed:
                err.print(f"entry {added.id} failed: {entry.msg or 'no reason given'}", style="red", markup=False)
                raise typer.Exit(exits.FAILED)
            if entry.scored or entry.msg == "OK":
                break
            time.sleep(poll)
    # openmvsep sends both `sdr_<stem>` and `metrics: {stem: {...}}`; one column per stem
    stems = [k for k in sorted(entry.metrics) if not k.startswith("sdr_")] or sorted(entry.metrics)
    out.print(_metrics_table([entry], stems))


@qc_app.command("leaderboard")
def qc_leaderboard(
    ctx: typer.Context,
    dataset_type: int = typer.Option(0, "--dataset-type", help="The dataset"),
    sort: Optional[str] = typer.Option(None, help="A stem to sort by (the server lists them)"),
    search: Optional[str] = typer.Option(None, help="Only algorithm names containing this text"),
    limit: int = typer.Option(20, min=1, max=20),
    server: Optional[str] = SERVER,
) -> None:
    """The Quality Checker's leaderboard."""
    remote = _remote(ctx, server, None)
    with _answering(), MVSepClient(remote.server) as mv:
        board = mv.qc_leaderboard(dataset_type, sort=sort, limit=limit, algo_name_filter=search)
    metrics = board.sortables or sorted({k for e in board.entries for k in e.metrics})
    out.print(_metrics_table(board.entries, metrics))


# The name of the first release; kept so scripts that call it go on working.
client_app.command("qc-leaderboard", hidden=True)(qc_leaderboard)
