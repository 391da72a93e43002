"""Requests/s of the hot read endpoints, as a ratio to a bare endpoint served the same way.

Starts `openmvsep serve` (no workers) on a free port with a throw-away data dir, queues one job so that
`separation/get` answers from the database, then loads each endpoint with the same client: C concurrent
keep-alive connections for S seconds. Prints req/s and the ratio to `/health/live` (target >= 0.5).

    .venv/bin/python bench/api.py [--seconds 3] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# bench/queue.py would shadow the standard library's `queue` (which torch, httpx and concurrent.futures import)
# for every script run from this folder: the folder leaves the import path before anything else is imported.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse
import asyncio
import io
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _connection(host: str, port: int, request: bytes, stop_at: float) -> tuple[int, int]:
    """One keep-alive connection sending the same GET until stop_at: (responses, non-200 responses)."""
    reader, writer = await asyncio.open_connection(host, port)
    done = errors = 0
    try:
        while time.perf_counter() < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            done += 1
            errors += status != 200
    finally:
        writer.close()
    return done, errors


async def _load(port: int, path: str, seconds: float, concurrency: int, headers: dict[str, str]) -> tuple[float, int]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()
    start = time.perf_counter()
    results = await asyncio.gather(
        *(_connection("127.0.0.1", port, request, start + seconds) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - start
    return sum(d for d, _ in results) / elapsed, sum(e for _, e in results)


def load(port: int, path: str, seconds: float, concurrency: int, headers: dict[str, str]) -> tuple[float, int]:
    """Requests/s and errors. A raw asyncio client in this process: light enough not to be the bottleneck."""
    return asyncio.run(_load(port, path, seconds, concurrency, headers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = {
            **os.environ,
            "OPENMVSEP_DATA_DIR": data,
            "OPENMVSEP_WORKERS": "0",
            "OPENMVSEP_RATE_LIMIT_PER_MINUTE": "0",
        }
        subprocess.run([str(BIN / "openmvsep"), "db", "upgrade"], env=env, check=True, capture_output=True)
        token = (
            subprocess.run(
                [str(BIN / "openmvsep"), "user", "create", "--email", "bench@example.com", "--password", "benchmark"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        server = subprocess.Popen(
            [str(BIN / "openmvsep"), "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{base}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            audio = io.BytesIO()
            sf.write(audio, np.zeros((44100, 2), np.float32), 44100, format="WAV")
            created = httpx.post(
                f"{base}/api/separation/create",
                data={"api_token": token, "sep_type": "55", "add_opt1": "dsp"},
                files={"audiofile": ("bench.wav", audio.getvalue(), "audio/wav")},
            ).json()
            job = created["data"]["hash"]
            cases = [
                ("bare /health/live", "/health/live", {}),
                ("GET /api/separation/get", f"/api/separation/get?hash={job}", {}),
                ("GET /api/app/algorithms", "/api/app/algorithms", {"Accept-Encoding": "gzip"}),
            ]
            for _name, path, headers in cases:  # warm-up
                load(port, path, 1.0, args.concurrency, headers)
            # Rounds interleave the endpoints so that a noisy neighbour hurts all of them alike; medians are kept.
            rounds: dict[str, list[tuple[float, int]]] = {name: [] for name, _, _ in cases}
            for _ in range(args.rounds):
                for name, path, headers in cases:
                    rounds[name].append(load(port, path, args.seconds, args.concurrency, headers))
            results = {
                name: (statistics.median(r for r, _ in runs), sum(e for _, e in runs)) for name, runs in rounds.items()
            }
        finally:
            server.terminate()
            server.wait(timeout=20)
    bare = results["bare /health/live"][0]
    print(f"{'endpoint':28} {'req/s':>9} {'ratio':>7} {'errors':>7}")
    for name, (rps, errors) in results.items():
        print(f"{name:28} {rps:9.0f} {rps / bare:7.2f} {errors:7d}")
    worst = min(rps for name, (rps, _) in results.items() if name != "bare /health/live") / bare
    print(f"target ratio >= 0.5: {'met' if worst >= 0.5 else 'NOT met'} (worst {worst:.2f})")


if __name__ == "__main__":
    main()
