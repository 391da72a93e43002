"""Seconds `probe()` takes on an honest long file, per format: the price of counting the length from the stream
(every upload pays it before a job is created) instead of believing the header.

Writes one file of each format (a stereo 44.1 kHz tone, --minutes long) to a temporary folder, then times
`openmvsep.engine.audio.probe` on each in a fresh interpreter per round. With `--against DIR` the same rounds run
with DIR/src first on the import path (an older checkout, e.g. one that read the length from the header),
interleaved, and the ratio is printed.

    .venv/bin/python bench/probe.py [--minutes 10] [--rounds 3] [--formats flac,mp3,wav,m4a] [--against ../base]
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# bench/queue.py would shadow the standard library's `queue`: this folder leaves the import path first.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = 44100
# MVSep's output format ids, which openmvsep's writer encodes: a real encoder for each container.
FORMAT_IDS = {"mp3": 0, "wav": 1, "flac": 2, "m4a": 3}

_TIMER = """
import json, sys, time
from openmvsep.engine.audio import probe
times = {}
for path in sys.argv[1:]:
    start = time.perf_counter()
    duration = probe(path).duration
    times[path] = [time.perf_counter() - start, duration]
print(json.dumps(times))
"""


def write_tone(path: Path, minutes: float) -> Path:
    sys.path.insert(0, str(ROOT / "src"))
    from openmvsep.engine.audio import AudioWriter

    t = np.arange(RATE) / RATE
    second = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    with AudioWriter(path, FORMAT_IDS[path.suffix[1:]], RATE, 2) as writer:
        for _ in range(int(minutes * 60)):
            writer.write(np.stack([second, second]))
    return path


def one_round(src: Path, files: list[Path]) -> dict[str, list[float]]:
    done = subprocess.run(
        [sys.executable, "-c", _TIMER, *map(str, files)],
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--formats", default="flac,mp3,wav,m4a", help=f"any of {', '.join(FORMAT_IDS)}")
    parser.add_argument("--against", type=Path, help="another checkout to time the same way (its src/ is used)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = {"this": ROOT / "src"}
    if args.against:
        trees["against"] = args.against.resolve() / "src"
    with tempfile.TemporaryDirectory(prefix="openmvsep-probe-") as folder:
        files = [write_tone(Path(folder) / f"tone.{fmt}", args.minutes) for fmt in args.formats.split(",")]
        times: dict[str, dict[str, list[float]]] = {name: {f.suffix[1:]: [] for f in files} for name in trees}
        durations: dict[str, dict[str, float]] = {name: {} for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():  # interleaved, so both see the same machine
                for path, (seconds, duration) in one_round(src, files).items():
                    times[name][Path(path).suffix[1:]].append(seconds)
                    durations[name][Path(path).suffix[1:]] = duration
    rows = {
        name: {fmt: {"median_s": statistics.median(t), "duration_s": durations[name][fmt]} for fmt, t in by.items()}
        for name, by in times.items()
    }
    if args.json:
        print(json.dumps(rows))
        return
    header = f"{'format':7} " + " ".join(f"{name + ' s':>10}" for name in rows)
    print(header + ("  this/against" if args.against else ""))
    for fmt in rows["this"]:
        line = f"{fmt:7} " + " ".join(f"{rows[name][fmt]['median_s']:10.3f}" for name in rows)
        if args.against:
            line += f"  {rows['this'][fmt]['median_s'] / rows['against'][fmt]['median_s']:12.1f}"
        print(line)
    print(f"({args.minutes:g} min files; median of {args.rounds} rounds; probe's duration: ", end="")
    print(", ".join(f"{fmt} {row['duration_s']:.3f} s" for fmt, row in rows["this"].items()) + ")")


if __name__ == "__main__":
    main()
