"""The benchmark scripts start (their timings are not tests): every one answers --help when run as a script
from a checkout, as the README runs them — bench/queue.py must not shadow the standard library's `queue`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_starts(script):
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120, cwd=BENCH.parent
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()


def test_queue_bench_measures_both_executors():
    """bench/queue.py brings up both deployments (real PostgreSQL and Redis for celery) and measures each."""
    import json

    from processes import PG_ADMIN, skip_without_postgres

    skip_without_postgres()
    postgres = PG_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "queue.py"),
            "--latency-jobs",
            "2",
            "--throughput-jobs",
            "2",
            "--postgres",
            postgres,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert [r["executor"] for r in report["results"]] == ["local", "celery"]
    for row in report["results"]:
        assert 0 < row["latency_ms"]["min"] <= row["latency_ms"]["median"] <= row["latency_ms"]["p90"]
        assert row["jobs_per_second"] > 0
    assert report["results"][1]["database"].startswith("PostgreSQL")
    assert report["celery_over_local"]["median"] > 0


def test_startup_bench_times_serve_and_sees_no_torch():
    """bench/startup.py starts `openmvsep serve`, times its first answer and tells whether torch was imported."""
    import json

    done = subprocess.run(
        [sys.executable, str(BENCH / "startup.py"), "--rounds", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout)["this"]
    assert 0 < row["median_s"] < 120 and row["torch_imported"] is False


# ------------------------------------------------------------------ bench/gpu.sh: the prepared GPU run, on the CPU


def load_bench(name: str):
    """A bench script as a module (bench/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_dry_run_runs_the_device_steps_in_a_simulated_image(request, tmp_path):
    """`bench/gpu.sh --dry-run`: the wheels for the GPU fit the call's 64 MiB with the tree, the call fits the tool,
    and the device's steps (install the carried wheels, import everything the bench and the reference import,
    bench/engine.py against msst, the tables) run in a bare venv that sees only the image's distributions."""
    import json
    import os

    kit = load_bench("gpu_kit")
    for family, path in kit.outside_configs().items():
        if not path.is_file():
            pytest.skip(f"{family}'s config {path} (../shared) is not beside this checkout")
    cache = request.config.cache.mkdir("gpu-dry-run")  # downloads kept: a full cache needs no index
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "GPU_DRY_CACHE": str(cache), "OUT": str(out), "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)  # the simulated image sees the carried wheels and nothing else of this venv
    done = subprocess.run(
        ["bash", str(BENCH / "gpu.sh"), "--dry-run"], capture_output=True, text=True, env=env, timeout=600
    )
    if done.returncode == kit.EXIT_UNREACHABLE:
        pytest.skip(f"the package index cannot be reached for the wheels: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "of 64 MiB" in done.stdout and 'command "bash bench/gpu.sh"' in done.stdout
    carried = done.stdout.split("carried: ", 1)[1].splitlines()[0].split(", ")
    assert {"msst", "demucs", "julius", "librosa", "omegaconf"} <= set(carried)
    report = json.loads((out / "engine-gpu.json").read_text())
    assert report["finished"] and [(r["family"], r["precision"]) for r in report["rows"]] == [
        ("bs_roformer", "fp32"),
        ("bs_roformer", "bf16"),
    ]
    fp32, bf16 = report["rows"]
    # The reference really ran in the simulated image, and ours equals it at fp32 (batch size 1, no autocast).
    assert fp32["ref_s"] > 0 and (fp32["snr_ref_db"] == "inf" or fp32["snr_ref_db"] > 100), fp32
    assert bf16["snr_fp32_db"] is not None and fp32["snr_fp32_db"] is None
    assert (out / "engine-gpu.md").read_text().count("| bs_roformer |") == 2
    assert {"imports.txt", "machine.txt", "engine-gpu.log"} <= {p.name for p in out.iterdir()}


def test_gpu_wheel_list_covers_what_the_engine_imports(tmp_path):
    """Without the index: every distribution the engine's side imports here is in the GPU image or pinned in
    bench/gpu-wheels.txt, and a list missing one (julius) fails, naming it."""
    kit = [sys.executable, str(BENCH / "gpu_kit.py"), "check-imports", "--modules", "ours"]
    done = subprocess.run(kit, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "carried: demucs, julius" in done.stdout
    short = tmp_path / "wheels.txt"
    short.write_text("".join(line for line in (BENCH / "gpu-wheels.txt").open() if not line.startswith("julius")))
    done = subprocess.run(kit + ["--wheel-list", str(short)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "julius" in done.stderr and "neither in the image nor carried" in done.stderr


def test_gpu_wheel_pins_match_the_constraints_and_leave_the_image_alone():
    kit = load_bench("gpu_kit")
    carried, standins = kit.pins()
    constraints = {}
    for line in (BENCH.parent / "constraints.txt").read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            constraints[kit.normalize(name)] = version
    assert {n: v for n, v in carried.items() if n in constraints and constraints[n] != v} == {}
    image = kit.image_packages()
    assert {"torch", "numpy", "einops", "safetensors", "pyyaml"} <= image
    assert not set(carried) & image and set(standins) <= image
    assert {"msst", "demucs"} <= set(carried)


def test_gpu_call_and_size_checks():
    """The README's device call fits the tool's limits; a carried folder over 64 MiB is refused."""
    kit = load_bench("gpu_kit")
    kit.check_call()
    assert len(kit.DEVICE_CALL["command"]) <= 2000
    assert kit.check_size([]) < kit.CARRY_LIMIT


def test_gpu_size_check_refuses_what_does_not_fit(tmp_path):
    kit = load_bench("gpu_kit")
    big = tmp_path / "wheels" / "big.whl"
    big.parent.mkdir()
    with big.open("wb") as f:  # sparse: 64 MiB counted, nothing written
        f.truncate(kit.CARRY_LIMIT)
    with pytest.raises(kit.KitError, match="over the device tool's 64 MiB"):
        kit.check_size([big.parent])


def test_gpu_table_is_checked(tmp_path):
    """bench/engine.py's table writer, read back by the check the device run ends with: a well-formed table
    passes; a short markdown row, a NaN in the JSON or a missing family fail."""
    import json

    engine, kit = load_bench("engine"), load_bench("gpu_kit")
    row = dict.fromkeys(kit.ROW_KEYS)
    rows = [
        {**row, "family": "scnet", "precision": "fp16", "ours_s": 1.5, "ref_s": 4.5, "speedup": 3.0, "note": ""},
        {**row, "family": "scnet", "precision": "fp32", "ours_s": 2.0, "snr_ref_db": float("inf"), "note": "a|b"},
    ]
    report = {"machine": "NVIDIA H100 80GB HBM3", "device": "cuda", "torch": "2.11.0", "seconds": 240.0}
    report |= {"batch_size": 0, "precisions": ["fp16", "fp32"], "reference": "msst", "finished": True, "rows": rows}
    args = type("Args", (), {"json": str(tmp_path / "t.json"), "markdown": str(tmp_path / "t.md")})
    engine.write_report(report, args)
    table = tmp_path / "t.json", tmp_path / "t.md"
    kit.check_table(*table, ["scnet"], ["fp16", "fp32"], complete=False)
    text = table[1].read_text()
    assert "| scnet | fp16 | 1.50 | 4.50 | 3.00x |" in text and "| inf |" in text and "a/b" in text
    with pytest.raises(kit.KitError, match="unmeasured"):  # the fp32 row has no reference seconds
        kit.check_table(*table, ["scnet"], ["fp16", "fp32"], complete=True)
    with pytest.raises(kit.KitError, match="expected"):
        kit.check_table(*table, ["scnet", "htdemucs"], ["fp16", "fp32"], complete=True)
    table[1].write_text(text.replace("| 3.00x |", "|"))
    with pytest.raises(kit.KitError, match="different widths"):
        kit.check_table(*table, ["scnet"], ["fp16", "fp32"], complete=False)
    engine.write_report(report, args)
    table[0].write_text(json.dumps(report))  # what json.dumps writes for inf by default: no strict JSON
    with pytest.raises(kit.KitError, match="strict JSON"):
        kit.check_table(*table, ["scnet"], ["fp16", "fp32"], complete=False)


def test_encode_bench_times_each_format_both_ways():
    done = subprocess.run(
        [sys.executable, str(BENCH / "encode.py"), "--stems", "2", "--seconds", "1", "--threads", "2"]
        + ["--formats", "0,2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.endswith("x")]
    assert [row.split("  ")[0] for row in rows] == ["mp3 (320 kbps)", "flac (lossless, 16 bit)"]
