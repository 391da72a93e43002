"""`openmvsep qc ...`: Quality Checker datasets, and scoring a submission without a server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from openmvsep.cli.common import err, open_services

qc_app = typer.Typer(help="The Quality Checker: datasets and scoring.", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets that submissions are scored against.", no_args_is_help=True)
qc_app.add_typer(dataset_app, name="dataset")


def _service():
    return open_services().quality


@dataset_app.command("synth")
def dataset_synth(
    out: Path = typer.Option(..., "-o", "--out", help="Folder to create (must not exist or be empty)"),
    tracks: int = typer.Option(8, min=1, help="Number of tracks"),
    seconds: float = typer.Option(10.0, min=1.0, help="Length of each track"),
    sample_rate: int = typer.Option(44100, help="Sample rate"),
    seed: int = typer.Option(0, help="Same seed and arguments: the same files, byte for byte"),
    name: str = typer.Option("Synthetic", help="Display name"),
    dataset_type: int = typer.Option(0, min=0, help="The dataset_type clients submit with"),
) -> None:
    """Generate a deterministic synthetic multi-stem dataset (drums, bass, melodic, voice-like; mixed exactly)."""
    from openmvsep.quality.synth import synthesize_dataset

    if out.exists() and any(out.iterdir()):
        err.print(f"[red]{out} is not empty[/red]")
        raise typer.Exit(2)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("synthesising", total=tracks)
        synthesize_dataset(
            out,
            tracks=tracks,
            seconds=seconds,
            sample_rate=sample_rate,
            seed=seed,
            name=name,
            dataset_type=dataset_type,
            progress=lambda done, _: progress.update(task, completed=done),
        )
    err.print(f"{tracks} tracks of {seconds:g} s written to {out}; register it with: openmvsep qc dataset add {out}")


@dataset_app.command("add")
def dataset_add(
    root: Path = typer.Argument(..., help="Dataset folder with dataset.yaml"),
    replace: bool = typer.Option(False, "--replace", help="Replace the dataset registered under its dataset_type"),
) -> None:
    """Register a dataset with this server (its mixtures become downloadable; references never)."""
    from openmvsep.quality.datasets import DatasetError
    from openmvsep.service.errors import ServiceError

    try:
        row = _service().register_dataset(root, replace=replace)
    except (DatasetError, ServiceError) as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    print(f"dataset_type {row.dataset_type}: {row.name} ({len(row.songs)} tracks; stems {', '.join(row.stems)})")


@dataset_app.command("list")
def dataset_list() -> None:
    """The datasets this server scores against."""
    table = Table("dataset_type", "name", "stems", "tracks", "rate", "mixtures")
    for d in _service().datasets():
        table.add_row(
            str(d["dataset_type"]),
            d["name"],
            ", ".join(d["stems"]),
            str(d["tracks"]),
            str(d["sample_rate"]),
            d["mixtures"],
        )
    Console().print(table)


@qc_app.command("score")
def score(
    submission: Path = typer.Argument(..., help="The zip of <song>_<stem>.wav|flac files"),
    dataset: Path = typer.Option(..., "--dataset", help="Dataset folder with dataset.yaml"),
    sdr_only: bool = typer.Option(False, "--sdr-only", help="Only the leaderboard SDR (seconds, not minutes)"),
    threads: int = typer.Option(1, min=1, help="Threads for the SDR arithmetic (one more reads the files)"),
) -> None:
    """Score a submission as the server would and print the metrics as JSON (no server, no database)."""
    from openmvsep.quality.datasets import DatasetError, load_dataset
    from openmvsep.quality.scoring import score_metrics, score_sdr
    from openmvsep.quality.submission import SubmissionError, open_submission

    started = time.perf_counter()
    try:
        data = load_dataset(dataset)
        sub = open_submission(submission, data)
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("SDR", total=len(data.songs) * len(sub.stems))
            scores = score_sdr(
                data, sub, threads=threads, progress=lambda done, _: progress.update(task, completed=done)
            )
            if not sdr_only:
                task = progress.add_task("metrics", total=len(data.songs))
                score_metrics(data, sub, scores, progress=lambda done, _: progress.update(task, completed=done))
    except (DatasetError, SubmissionError) as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    print(json.dumps(scores.to_json(), indent=2))
    err.print(f"scored {len(data.songs)} tracks x {len(sub.stems)} stems in {time.perf_counter() - started:.1f} s")
