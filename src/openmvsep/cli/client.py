"""`openmvsep client ...`: the Python client (openmvsep.client) on the command line, against any MVSep-compatible
server, mvsep.com included.

Exit codes scripts can rely on: 0 everything done, 1 the server refused or a separation failed (its message is
printed), 2 bad arguments.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from openmvsep.client import JobStatus, MVSepClient, MVSepError

client_app = typer.Typer(help="Use a remote MVSep-compatible server (mvsep.com or openmvsep).", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac", ".aiff", ".aif", ".mp4", ".wma"}
# Beside each input's outputs: which job made them, so a second run resumes or skips instead of paying again.
JOB_RECORD = ".openmvsep-job.json"

SERVER = typer.Option("https://mvsep.com", "--server", envvar="OPENMVSEP_CLIENT_SERVER", help="The server's base URL")
TOKEN = typer.Option(None, "--token", envvar=["OPENMVSEP_CLIENT_TOKEN", "MVSEP_API_TOKEN"], help="API token")


def _fail(exc: MVSepError) -> typer.Exit:
    err.print(f"[red]{exc.message}[/red]")
    return typer.Exit(1)


def _inputs(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            err.print(f"[red]{path}: no such file or folder[/red]")
            raise typer.Exit(2)
    return found


def _describe(status: JobStatus) -> str:
    if status.status == "waiting" and status.current_order is not None:
        text = f"waiting (place {status.current_order} of {status.queue_count})"
    elif status.all_chunks:
        text = f"{status.status} ({status.finished_chunks or 0}/{status.all_chunks} chunks)"
    else:
        text = status.status
    # openmvsep servers add how far the job is and the time left; MVSep's own does not
    if status.progress is not None and status.status != "done":
        text += f", {status.progress}%"
    if status.eta_seconds is not None and status.status != "done":
        text += f", about {status.eta_seconds} s left"
    return text


@client_app.command()
def separate(
    inputs: list[Path] = typer.Argument(..., help="Audio files, or folders of them"),
    sep_type: int = typer.Option(..., "--sep-type", help="The algorithm (render_id of `client algorithms`)"),
    opt1: Optional[str] = typer.Option(None, "--opt1", help="add_opt1"),
    opt2: Optional[str] = typer.Option(None, "--opt2", help="add_opt2"),
    opt3: Optional[str] = typer.Option(None, "--opt3", help="add_opt3"),
    output_format: int = typer.Option(1, "--format", help="0 mp3, 1 wav, 2 flac, 3 m4a, 4 wav 32-bit, 5 flac 24-bit"),
    out_dir: Path = typer.Option(Path("separated"), "-o", "--out", help="Outputs go to OUT/<input name>/"),
    poll: float = typer.Option(5.0, help="Seconds between status checks"),
    server: str = SERVER,
    token: Optional[str] = TOKEN,
) -> None:
    """Separate files one at a time (never more than one job of yours in the queue); a second run skips what is
    already downloaded and resumes a job that was started but not downloaded."""
    files = _inputs(inputs)
    options = {"add_opt1": opt1, "add_opt2": opt2, "add_opt3": opt3, "output_format": output_format}
    request = {"sep_type": sep_type, **options}
    failures = 0
    with MVSepClient(server, token=token) as mv:
        for source in files:
            dest = out_dir / source.stem
            record_path = dest / JOB_RECORD
            record: dict[str, Any] = json.loads(record_path.read_text()) if record_path.is_file() else {}
            if record.get("request") != request:
                record = {}  # other options: another job
            if record.get("complete") and all((dest / name).is_file() for name in record.get("files", [])):
                out.print(f"{source.name}: already downloaded, skipped")
                continue
            try:
                if not record.get("hash"):
                    # The key is written down before the upload: a run stopped after the server took the job but
                    # before its hash was recorded sends the same key again, and a server that honours it answers
                    # with that job instead of a second one.
                    record = {"request": request, "idempotency_key": record.get("idempotency_key") or uuid.uuid4().hex}
                    dest.mkdir(parents=True, exist_ok=True)
                    record_path.write_text(json.dumps(record))
                    out.print(f"{source.name}: uploading")
                    job = mv.create(source, sep_type, idempotency_key=record["idempotency_key"], **options)
                    record["hash"] = job.hash
                    record_path.write_text(json.dumps(record))
                last = [""]

                def show(status: JobStatus, name: str = source.name, last: list[str] = last) -> None:
                    text = _describe(status)
                    if text != last[0]:
                        out.print(f"{name}: {text}")
                        last[0] = text

                done = mv.wait(record["hash"], on_progress=show, poll_interval=poll)
                paths = mv.download_all(done, dest)
            except MVSepError as exc:
                err.print(f"[red]{source.name}: {exc.message}[/red]")
                failures += 1
                continue
            record.update(complete=True, files=[p.name for p in paths])
            record_path.write_text(json.dumps(record))
            out.print(f"{source.name}: {len(paths)} file(s) in {dest}")
    if failures:
        raise typer.Exit(1)


@client_app.command()
def algorithms(
    search: Optional[str] = typer.Option(None, help="Only names containing this text"),
    runnable: bool = typer.Option(False, "--runnable", help="Only what the server can run now (openmvsep says so)"),
    server: str = SERVER,
    token: Optional[str] = TOKEN,
) -> None:
    """The server's algorithms: sep_type, name and options."""
    try:
        with MVSepClient(server, token=token) as mv:
            found = mv.algorithms()
    except MVSepError as exc:
        raise _fail(exc) from exc
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


@client_app.command()
def status(hash_value: str = typer.Argument(..., metavar="HASH"), server: str = SERVER, token: Optional[str] = TOKEN):
    """One separation's status (and its files when done)."""
    try:
        with MVSepClient(server, token=token) as mv:
            job = mv.get(hash_value)
    except MVSepError as exc:
        raise _fail(exc) from exc
    out.print(_describe(job) + (f": {job.message}" if job.message else ""))
    for f in job.files:
        out.print(f"  {f.type}: {f.url}")


@client_app.command()
def history(limit: int = typer.Option(20, min=1, max=20), server: str = SERVER, token: Optional[str] = TOKEN):
    """Your recent separations."""
    try:
        with MVSepClient(server, token=token) as mv:
            items = mv.history(limit=limit)
    except MVSepError as exc:
        raise _fail(exc) from exc
    table = Table("hash", "created", "algorithm", "files kept")
    for item in items:
        kept = f"{item.time_left} h" if item.job_exists and item.time_left is not None else "no"
        table.add_row(item.hash, item.created_at or "", item.algorithm or "", kept)
    out.print(table)


@client_app.command()
def cancel(hash_value: str = typer.Argument(..., metavar="HASH"), server: str = SERVER, token: Optional[str] = TOKEN):
    """Cancel a separation that has not started (its credits are refunded)."""
    try:
        with MVSepClient(server, token=token) as mv:
            answer = mv.cancel(hash_value)
    except MVSepError as exc:
        raise _fail(exc) from exc
    out.print(answer.message or "cancelled")


@client_app.command("qc-leaderboard")
def qc_leaderboard(
    dataset_type: int = typer.Option(0, help="The dataset"),
    sort: Optional[str] = typer.Option(None, help="A metric to sort by (the server lists them)"),
    limit: int = typer.Option(20, min=1, max=20),
    server: str = SERVER,
) -> None:
    """The Quality Checker's leaderboard."""
    try:
        with MVSepClient(server) as mv:
            board = mv.qc_leaderboard(dataset_type, sort=sort, limit=limit)
    except MVSepError as exc:
        raise _fail(exc) from exc
    metrics = board.sortables or sorted({k for e in board.entries for k in e.metrics})
    table = Table("id", "algorithm", *metrics)
    for entry in board.entries:
        table.add_row(str(entry.id), entry.algo_name or "", *(str(entry.metrics.get(m, "")) for m in metrics))
    out.print(table)
