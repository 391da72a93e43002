"""Engine speed and memory against the reference implementation, on the same machine in one run.

    .venv/bin/python bench/engine.py [--families bs_roformer,mel_band_roformer,mdx23c,scnet,htdemucs]
        [--seconds 240] [--device auto|cpu|cuda] [--precision fp32|fp16|bf16] [--batch-size 0]
        [--oracle .oracle/bin/python] [--memory-minutes 1,5,20,60]

For each family the public config (full size) gets random weights (seeded); our engine and the reference's
`demix` (msst 0.1.0, run by the oracle venv's python: scripts/oracle-env.sh) separate the same stereo input
of `--seconds`. Each run is a fresh process after one warm-up pass; printed: our seconds, the reference's,
their ratio, both peaks (GPU memory on CUDA, resident memory on CPU), and the SNR between the two outputs.
HTDemucs is compared with demucs' own `apply_model` (shifts=0), the reference its equality tests use.
The reference is timed at its config's batch size with fp16 autocast on CUDA (its defaults); ours at the given
batch size and precision. The reference's output depends on its batch size (ENGINES.md §b.1 step 6: e.g. with
Bs > 1 on a short input sample 0 becomes 0/0 -> 0), ours follows its batch-size-1 output, so "SNR bs1" compares
ours with one more, untimed reference run at batch size 1 in fp32: the equal-output check.

`--memory-minutes` separates inputs of those lengths with `openmvsep infer`'s segmented path and a small
model, printing peak resident memory against input length: it must stay flat.
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# bench/queue.py would shadow the standard library's `queue` (which torch, httpx and concurrent.futures import)
# for every script run from this folder: the folder leaves the import path before anything else is imported.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "openmvsep" / "engine" / "configs"
SHARED_CONFIGS = ROOT.parent / "shared" / "reference" / "msst-configs"
FAMILIES = {
    "bs_roformer": CONFIGS / "model_bs_roformer_ep_317_sdr_12.9755.yaml",
    "mel_band_roformer": CONFIGS / "config_vocals_mel_band_roformer_kj.yaml",
    "mdx23c": CONFIGS / "config_vocals_mdx23c.yaml",
    "scnet": SHARED_CONFIGS / "config_musdb18_scnet.yaml",
    "htdemucs": CONFIGS / "config_musdb18_htdemucs.yaml",
}
RATE = 44100


def peak_rss_mb() -> float:
    """This process's resident high-water mark. Not ru_maxrss: Linux carries the parent's peak across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synth(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    tones = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 3520 * t)
    return np.stack([tones + 0.05 * rng.standard_normal(t.size), tones + 0.05 * rng.standard_normal(t.size)]).astype(
        np.float32
    )


# ------------------------------------------------------------------ one measured run (a fresh process each)


def run_ours(args: argparse.Namespace) -> dict:
    import torch
    from safetensors.torch import load_file

    from openmvsep.engine.separator import load_model, separate

    loaded = load_model(args.family, FAMILIES[args.family], load_file(args.weights), device=args.device)
    mix = np.load(args.input)
    separate(loaded, mix[:, : RATE * 2], batch_size=args.batch_size, precision=args.precision)  # warm-up
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = separate(loaded, mix, batch_size=args.batch_size, precision=args.precision, residual=False)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if loaded.device.type == "cuda" else peak_rss_mb()
    np.save(args.output, np.stack([out[k] for k in sorted(out)]))
    return {"seconds": seconds, "peak_mb": peak}


def run_demucs_reference(args: argparse.Namespace) -> dict:
    """HTDemucs' reference is demucs' own `apply_model` (shifts=0), in this venv: msst's htdemucs needs a
    torchaudio that no wheel provides for this torch, and its demucs mode differs from demucs by design."""
    import torch
    from demucs.apply import apply_model
    from safetensors.torch import load_file

    from openmvsep.engine.config import load_config
    from openmvsep.engine.models import build_model
    from openmvsep.engine.separator import resolve_device

    model = build_model("htdemucs", load_config(FAMILIES["htdemucs"]))
    model.load_state_dict(load_file(args.weights))
    device = resolve_device(args.device)
    model = model.to(device).eval()
    mix = torch.from_numpy(np.load(args.input))[None].to(device)
    with torch.no_grad():
        apply_model(model, mix[..., : RATE * 2], shifts=0, split=True, overlap=0.25, device=device)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = apply_model(model, mix, shifts=0, split=True, overlap=0.25, device=device)[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
    order = sorted(range(len(model.sources)), key=lambda i: model.sources[i])
    np.save(args.output, out[order].cpu().numpy())
    return {"seconds": seconds, "peak_mb": peak}


def run_reference(args: argparse.Namespace) -> dict:
    """Runs under the oracle venv: msst's model class, config loader and demix."""
    if args.family == "htdemucs":
        return run_demucs_reference(args)
    import torch
    from msst.utils.model_utils import demix
    from msst.utils.settings import get_model_from_config
    from safetensors.torch import load_file

    model_type = "htdemucs" if args.family == "htdemucs" else args.family
    model, config = get_model_from_config(model_type, str(FAMILIES[args.family]))
    model.load_state_dict(load_file(args.weights), strict=False)
    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    mix = np.load(args.input)
    normalize = bool(getattr(config.inference, "normalize", False)) if hasattr(config, "inference") else False
    if normalize:  # what the reference's inference script does around demix when the config asks
        from msst.utils.audio_utils import denormalize_audio, normalize_audio
    if args.equality:  # the settings our output must equal: one chunk per call, fp32
        config.inference.batch_size = 1
        config.training.use_amp = False
    else:
        demix(config, model, mix[:, : RATE * 2], device, model_type)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if normalize:
        normalized, params = normalize_audio(mix)
        out = demix(config, model, normalized, device, model_type)
        out = {k: denormalize_audio(v, params) for k, v in out.items()}
    else:
        out = demix(config, model, mix, device, model_type)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
    if not isinstance(out, dict):
        out = {config.training.instruments[0]: out}
    np.save(args.output, np.stack([out[k] for k in sorted(out)]))
    amp = bool(getattr(config.training, "use_amp", True)) and device.type == "cuda"  # as demix decides
    return {"seconds": seconds, "peak_mb": peak, "batch_size": int(config.inference.batch_size), "amp": amp}


# ------------------------------------------------------------------ driver


def make_weights(family: str, path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from openmvsep.engine.config import load_config
    from openmvsep.engine.models import build_model

    torch.manual_seed(0)
    model = build_model(family, load_config(FAMILIES[family]))
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()}, str(path))


def measure(
    python: str, role: str, family: str, work: Path, args: argparse.Namespace, equality: bool = False
) -> dict | None:
    out = work / f"{family}-{role}{'-bs1' if equality else ''}.npy"
    cmd = [
        python,
        __file__,
        "--role",
        role,
        "--family",
        family,
        "--weights",
        str(work / f"{family}.safetensors"),
        "--input",
        str(work / "mix.npy"),
        "--output",
        str(out),
        "--device",
        args.device,
        "--precision",
        args.precision,
        "--batch-size",
        str(args.batch_size),
    ] + (["--equality"] if equality else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(f"  {family} {role} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
        return None
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["output"] = out
    return result


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = np.sum((reference.astype(np.float64) - estimate) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / noise)


def equal_output_snr(family: str, timed: dict, ours: np.ndarray, work: Path, args: argparse.Namespace) -> float:
    """SNR of ours against the reference at batch size 1 in fp32; the timed run is reused when it already was.
    HTDemucs' reference (demucs' apply_model) has no such dependence: its timed run is the one."""
    if family == "htdemucs" or (timed.get("batch_size") == 1 and not timed.get("amp")):
        reference = np.load(timed["output"])
    else:
        run = measure(args.oracle, "reference", family, work, args, equality=True)
        if run is None:
            return float("nan")
        reference = np.load(run["output"])
    return snr_db(reference, ours) if reference.shape == ours.shape else float("nan")


def memory_table(minutes: list[float]) -> None:
    """Peak RSS of `openmvsep infer` (segmented) against input length, with the small fixture model."""
    from openmvsep.engine.audio import AudioWriter

    fixture = ROOT / "tests" / "fixtures" / "engine" / "bs_roformer"
    print(f"\n{'input (min)':>12} {'peak RSS (MB)':>14} {'seconds':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for m in minutes:
            src = Path(tmp) / f"in_{m}.flac"
            with AudioWriter(src, 2, RATE, 2) as w:  # written in blocks: the generator itself stays small
                for _ in range(int(m * 6)):
                    w.write(synth(10.0))
            start = time.perf_counter()
            r = subprocess.run(
                [
                    "/usr/bin/time",
                    "-f",
                    "%M",
                    str(Path(sys.executable).parent / "openmvsep"),
                    "infer",
                    "--model-type",
                    "bs_roformer",
                    "--config",
                    str(fixture / "config.yaml"),
                    "--checkpoint",
                    str(fixture / "weights.safetensors"),
                    "--device",
                    "cpu",
                    "-o",
                    str(Path(tmp) / "out"),
                    str(src),
                ],
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - start
            peak_kb = int(r.stderr.strip().splitlines()[-1]) if r.returncode == 0 else -1
            print(f"{m:12g} {peak_kb / 1024:14.0f} {seconds:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=0, help="0: one chunk per call on CPU, four on a GPU")
    parser.add_argument("--oracle", default=str(ROOT / ".oracle" / "bin" / "python"))
    parser.add_argument("--memory-minutes", default="")
    parser.add_argument("--role", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--equality", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role:
        result = run_ours(args) if args.role == "ours" else run_reference(args)
        print(json.dumps(result))
        return

    families = [f for f in args.families.split(",") if f]
    has_oracle = Path(args.oracle).exists()
    print(
        f"engine benchmark: {args.seconds:g} s stereo input, device {args.device}, precision {args.precision}, "
        f"batch {args.batch_size}; reference: {'msst 0.1.0 via ' + args.oracle if has_oracle else 'not available'}"
    )
    print(
        f"{'family':18} {'ours s':>8} {'msst s':>8} {'speed-up':>9} {'ours MB':>9} {'msst MB':>9} {'SNR dB':>7} "
        f"{'SNR bs1':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.save(work / "mix.npy", synth(args.seconds))
        for family in families:
            make_weights(family, work / f"{family}.safetensors")
            ours = measure(sys.executable, "ours", family, work, args)
            reference_python = sys.executable if family == "htdemucs" else args.oracle
            ref = measure(reference_python, "reference", family, work, args) if has_oracle else None
            if ours is None:
                continue
            line = f"{family:18} {ours['seconds']:8.2f} "
            if ref:
                a, b = np.load(ours["output"]), np.load(ref["output"])
                quality = snr_db(b, a) if a.shape == b.shape else float("nan")
                equal = equal_output_snr(family, ref, a, work, args)
                line += (
                    f"{ref['seconds']:8.2f} {ref['seconds'] / ours['seconds']:8.2f}x {ours['peak_mb']:9.0f} "
                    f"{ref['peak_mb']:9.0f} {quality:7.1f} {equal:8.1f}"
                )
            else:
                line += f"{'-':>8} {'-':>9} {ours['peak_mb']:9.0f} {'-':>9} {'-':>7} {'-':>8}"
            print(line, flush=True)
    if args.memory_minutes:
        memory_table([float(m) for m in args.memory_minutes.split(",")])


if __name__ == "__main__":
    main()
