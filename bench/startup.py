"""Seconds from starting `openmvsep serve` to its first answer, and whether the API process imported torch.

Each round starts `openmvsep serve` (no workers) on a free port with a fresh data dir and polls `/health/live`
until it answers 200. The second half of the start-up (migrations, the default Quality Checker dataset) is in the
first round only; later rounds reuse nothing but the OS's file cache. With `--against DIR` the same rounds run
with DIR/src first on the import path (an older checkout), interleaved, and the ratio is printed.

    .venv/bin/python bench/startup.py [--rounds 5] [--against ../base]
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# bench/queue.py would shadow the standard library's `queue`: this folder leaves the import path first.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse
import json
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_start(src: Path, timeout: float = 120.0) -> tuple[float, bool]:
    """(seconds to the first 200 of /health/live, whether torch was imported by then)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="openmvsep-startup-") as data:
        env = {
            **os.environ,
            "PYTHONPATH": str(src),
            "OPENMVSEP_DATA_DIR": data,
            "OPENMVSEP_PORT": str(port),
            "OPENMVSEP_WORKERS": "0",
            "OPENMVSEP_QC_DEFAULT_DATASET_TRACKS": "0",
        }
        # The server is started through a tiny wrapper that can tell afterwards whether torch is loaded.
        probe = (
            "import runpy, sys, threading, os\n"
            "def report():\n"
            "    import time; time.sleep(0.2)\n"
            "    while not os.path.exists(os.environ['STARTUP_FLAG']): time.sleep(0.05)\n"
            "    print('TORCH', 'torch' in sys.modules, flush=True)\n"
            "threading.Thread(target=report, daemon=True).start()\n"
            "sys.argv = ['openmvsep', 'serve']\n"
            "from openmvsep.cli import app\n"
            "app()\n"
        )
        flag = Path(data) / "answered"
        env["STARTUP_FLAG"] = str(flag)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", probe], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        try:
            while True:
                if time.perf_counter() - start > timeout:
                    raise TimeoutError("serve did not answer")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.02)
            elapsed = time.perf_counter() - start
            flag.touch()
            line = proc.stdout.readline()
            return elapsed, line.strip() == "TORCH True"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another checkout to time the same way (its src/ is used)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = {"this": ROOT / "src"}
    if args.against:
        trees["against"] = args.against.resolve() / "src"
    times: dict[str, list[float]] = {name: [] for name in trees}
    torch: dict[str, bool] = {}
    for _ in range(args.rounds):
        for name, src in trees.items():  # interleaved, so both see the same machine
            seconds, imported = one_start(src)
            times[name].append(seconds)
            torch[name] = torch.get(name, False) or imported
    rows = {
        name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "torch_imported": torch[name]}
        for name, t in times.items()
    }
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'tree':8} {'median s':>9} {'min s':>7} {'max s':>7}  torch imported")
    for name, row in rows.items():
        print(f"{name:8} {row['median_s']:9.2f} {row['min_s']:7.2f} {row['max_s']:7.2f}  {row['torch_imported']}")
    if "against" in rows:
        print(f"this/against (median): {rows['this']['median_s'] / rows['against']['median_s']:.2f}")


if __name__ == "__main__":
    main()
