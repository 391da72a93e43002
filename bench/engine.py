"""Engine speed and memory against the reference implementation, on the same machine in one run.

    .venv/bin/python bench/engine.py [--families bs_roformer,mel_band_roformer,mdx23c,scnet,htdemucs]
        [--seconds 240] [--device auto|cpu|cuda] [--precision fp32|fp16|bf16[,...]] [--batch-size 0]
        [--oracle .oracle/bin/python] [--config FAMILY=PATH ...] [--no-equality] [--deadline 0]
        [--json PATH] [--markdown PATH] [--memory-minutes 1,5,20,60]

For each family the public config (full size) gets random weights (seeded); our engine and the reference's
`demix` (msst 0.1.0, run by the oracle venv's python: scripts/oracle-env.sh) separate the same stereo input
of `--seconds`. Each run is a fresh process after one warm-up pass; printed: our seconds, the reference's,
their ratio, both peaks (GPU memory on CUDA, resident memory on CPU), and the SNR between the two outputs.
HTDemucs is compared with demucs' own `apply_model` (shifts=0), the reference its equality tests use.
The reference is timed at its config's batch size with fp16 autocast on CUDA (its defaults); ours at the given
batch size and precision. The reference's output depends on its batch size (ENGINES.md §b.1 step 6: e.g. with
Bs > 1 on a short input sample 0 becomes 0/0 -> 0), ours follows its batch-size-1 output, so "SNR bs1" compares
ours with one more, untimed reference run at batch size 1 in fp32: the equal-output check.

`--precision` takes a list (fp16,fp32,bf16): ours runs at each, the reference once per family, and with fp32
among them "SNR fp32" compares each of ours with our fp32 output. `--deadline` bounds the whole run: each
family gets a share of the time left in proportion to its weight (FAMILY_WEIGHT), every measured process is
stopped when its family's share runs out, and what was not measured says so in the table; `--json` and
`--markdown` rewrite the table after each family, so a run stopped from outside still leaves what it measured.

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
import shutil
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
# Relative cost of a family's runs, for sharing a --deadline: the two RoFormers are the heavy ones.
FAMILY_WEIGHT = {"bs_roformer": 3.0, "mel_band_roformer": 3.0, "mdx23c": 2.0, "scnet": 1.5, "htdemucs": 1.5}
PRECISIONS = ("fp32", "fp16", "bf16")
RATE = 44100
# This checkout's package, in the driver as in the measured processes: on a GPU machine nothing is installed.
sys.path.insert(0, str(ROOT / "src"))


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

    loaded = load_model(args.family, Path(args.config_file), load_file(args.weights), device=args.device)
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

    model = build_model("htdemucs", load_config(Path(args.config_file)))
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
    model, config = get_model_from_config(model_type, args.config_file)
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


def make_weights(family: str, config: Path, path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from openmvsep.engine.config import load_config
    from openmvsep.engine.models import build_model

    torch.manual_seed(0)
    model = build_model(family, load_config(config))
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()}, str(path))


class Budget:
    """`--deadline` shared out: a family gets the time left in proportion to its weight among the families still
    to run, so one slow family cannot starve the rest, and what a fast one leaves goes to those after it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds if seconds > 0 else None
        self.family_end: float | None = None

    def start_family(self, family: str, still_to_run: list[str]) -> None:
        if self.end is None:
            return
        left = max(0.0, self.end - time.monotonic())
        weight = FAMILY_WEIGHT.get(family, 1.0)
        self.family_end = time.monotonic() + left * weight / sum(FAMILY_WEIGHT.get(f, 1.0) for f in still_to_run)

    def timeout(self) -> float | None:
        return None if self.family_end is None else self.family_end - time.monotonic()


def measure(
    python: str,
    role: str,
    family: str,
    precision: str,
    work: Path,
    args: argparse.Namespace,
    timeout: float | None,
    equality: bool = False,
) -> dict:
    """One measured run in a fresh process; {"error": why} when it failed, ran out of time or had none left."""
    tag = f"ours {precision}" if role == "ours" else f"reference{' bs1 fp32' if equality else ''}"
    out = work / f"{family}-{tag.replace(' ', '-')}.npy"
    cmd = [
        python,
        __file__,
        "--role",
        role,
        "--family",
        family,
        "--config-file",
        str(args.family_configs[family]),
        "--weights",
        str(work / f"{family}.safetensors"),
        "--input",
        str(work / "mix.npy"),
        "--output",
        str(out),
        "--device",
        args.device,
        "--precision",
        precision,
        "--batch-size",
        str(args.batch_size),
    ] + (["--equality"] if equality else [])
    # This checkout's package first; what PYTHONPATH already holds (wheels carried to a GPU machine) stays after it.
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    result: dict
    if timeout is not None and timeout < 1:
        result = {"error": "no time left"}
    else:
        try:
            r = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            result = {"error": f"stopped after {timeout:.0f} s"}
        else:
            if r.returncode != 0:
                lines = r.stderr.strip().splitlines()
                result = {"error": lines[-1] if lines else f"exit status {r.returncode}"}
            else:
                result = json.loads(r.stdout.strip().splitlines()[-1])
                result["output"] = out
    if "error" in result:
        print(f"  {family} {tag}: {result['error']}", flush=True)
    else:
        print(f"  {family} {tag}: {result['seconds']:.2f} s, peak {result['peak_mb']:.0f} MB", flush=True)
    return result


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = np.sum((reference.astype(np.float64) - estimate) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / noise)


def snr_between(reference: dict | None, estimate: dict) -> float | None:
    if not reference or "output" not in reference or "output" not in estimate:
        return None
    a, b = np.load(reference["output"]), np.load(estimate["output"])
    return snr_db(a, b) if a.shape == b.shape else None


def equality_reference(family: str, timed: dict, work: Path, args: argparse.Namespace, budget: Budget) -> dict | None:
    """The reference at batch size 1 in fp32, the output ours reproduces; the timed run is reused when it already
    was. HTDemucs' reference (demucs' apply_model) has no such dependence: its timed run is the one."""
    if "error" in timed:
        return None
    if family == "htdemucs" or (timed.get("batch_size") == 1 and not timed.get("amp")):
        return timed
    if not args.equality:
        return None
    return measure(args.oracle, "reference", family, "fp32", work, args, budget.timeout(), equality=True)


def bench_family(family: str, precisions: list[str], work: Path, args: argparse.Namespace, budget: Budget) -> list:
    """Ours at each precision (the reference's timed run after the first), then the SNRs between the outputs."""
    make_weights(family, args.family_configs[family], work / f"{family}.safetensors")
    ours: dict[str, dict] = {}
    ref: dict = {"error": "not available (scripts/oracle-env.sh, or --oracle)"}
    for i, precision in enumerate(precisions):
        ours[precision] = measure(sys.executable, "ours", family, precision, work, args, budget.timeout())
        if i == 0 and args.oracle:
            python = sys.executable if family == "htdemucs" else args.oracle
            ref = measure(python, "reference", family, precision, work, args, budget.timeout())
    bs1 = equality_reference(family, ref, work, args, budget)
    rows = []
    for precision in precisions:
        run = ours[precision]
        notes = [f"ours: {run['error']}"] if "error" in run else []
        if "error" in ref:
            notes.append(f"reference: {ref['error']}")
        if bs1 and "error" in bs1:
            notes.append(f"reference bs1: {bs1['error']}")
        ours_s, ref_s = run.get("seconds"), ref.get("seconds")
        rows.append(
            table_row(
                family,
                precision,
                ours_s=ours_s,
                ref_s=ref_s,
                speedup=ref_s / ours_s if ours_s and ref_s else None,
                ours_mb=run.get("peak_mb"),
                ref_mb=ref.get("peak_mb"),
                ref_batch=ref.get("batch_size"),
                ref_amp=ref.get("amp"),
                snr_ref_db=snr_between(ref, run),
                snr_bs1_db=snr_between(bs1, run),
                snr_fp32_db=snr_between(ours.get("fp32"), run) if precision != "fp32" else None,
                note="; ".join(notes),
            )
        )
    return rows


def table_row(family: str, precision: str, **values: object) -> dict:
    row: dict = {"family": family, "precision": precision} | dict.fromkeys(k for k, *_ in COLUMNS[2:])
    return row | {"ref_batch": None, "ref_amp": None, "note": ""} | values


# ------------------------------------------------------------------ the table: text, markdown, json

COLUMNS = [  # key, text header, markdown header, format
    ("family", "family", "family", "{}"),
    ("precision", "precision", "precision", "{}"),
    ("ours_s", "ours s", "ours s", "{:.2f}"),
    ("ref_s", "msst s", "reference s", "{:.2f}"),
    ("speedup", "speed-up", "speed-up", "{:.2f}x"),
    ("ours_mb", "ours MB", "ours peak MB", "{:.0f}"),
    ("ref_mb", "msst MB", "reference peak MB", "{:.0f}"),
    ("snr_ref_db", "SNR dB", "SNR vs reference dB", "{:.1f}"),
    ("snr_bs1_db", "SNR bs1", "SNR vs reference bs1 fp32 dB", "{:.1f}"),
    ("snr_fp32_db", "SNR fp32", "SNR vs our fp32 dB", "{:.1f}"),
]
TEXT_WIDTHS = [18, 9, 8, 8, 9, 9, 9, 7, 8, 9]


def cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if value == "inf" or (isinstance(value, float) and np.isinf(value)):
        return "inf"
    return fmt.format(value)


def text_line(cells: list[str]) -> str:
    return " ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, TEXT_WIDTHS)))


def text_row(row: dict) -> str:
    line = text_line([cell(row, key, fmt) for key, _, _, fmt in COLUMNS])
    return f"{line}  {row['note']}" if row.get("note") else line


def markdown_table(report: dict) -> str:
    """The table as the README's benchmark section and an issue's closing note carry it."""
    state = "" if report["finished"] else " (unfinished: stopped, or still running)"
    lines = [
        f"### Engine benchmark on {report['machine']}{state}",
        "",
        f"{report['seconds']:g} s stereo input, device {report['device']}, torch {report['torch']}, our batch size "
        f"{report['batch_size'] or 'default'}. Reference: {report['reference']}. Speed-up: reference seconds / "
        "ours. Peaks: GPU memory allocated on CUDA, resident memory on CPU.",
        "",
        "| " + " | ".join(header for _, _, header, _ in COLUMNS) + " | note |",
        "| --- | --- | " + " | ".join("---:" for _ in COLUMNS[2:]) + " | --- |",
    ]
    for row in report["rows"]:
        note = " ".join(str(row.get("note") or "").replace("|", "/").split())
        lines.append("| " + " | ".join(cell(row, key, fmt) for key, _, _, fmt in COLUMNS) + f" | {note} |")
    return "\n".join(lines) + "\n"


def json_safe(value: object) -> object:
    """Strict JSON: an infinite SNR (identical outputs) is written "inf", a missing one null."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return "inf" if np.isinf(value) else (None if np.isnan(value) else round(value, 4))
    return value


def write_report(report: dict, args: argparse.Namespace) -> None:
    """Rewritten whole after each family (written aside, then renamed), so a stopped run leaves a readable table."""
    renders = {args.json: lambda: json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n"}
    renders[args.markdown] = lambda: markdown_table(report)
    for path, render in renders.items():
        if path:
            aside = Path(f"{path}.part")
            aside.write_text(render())
            aside.replace(path)


def machine_name(device: str) -> str:
    """The GPU's name where one is used, else the processor's model and core count."""
    if device in ("auto", "cuda") and shutil.which("nvidia-smi"):
        r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip().splitlines()[0]
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return f"{os.uname().machine}, {os.cpu_count()} cores"


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


def family_configs(overrides: list[str]) -> dict[str, Path]:
    configs = dict(FAMILIES)
    for item in overrides:
        family, sep, path = item.partition("=")
        if not sep or family not in FAMILIES:
            raise SystemExit(f"--config takes FAMILY=PATH, FAMILY one of {', '.join(FAMILIES)}: {item!r}")
        configs[family] = Path(path).resolve()
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", help="one or several, comma-separated: fp32, fp16, bf16")
    parser.add_argument("--batch-size", type=int, default=0, help="0: one chunk per call on CPU, four on a GPU")
    parser.add_argument("--oracle", default=str(ROOT / ".oracle" / "bin" / "python"))
    parser.add_argument(
        "--config", action="append", default=[], metavar="FAMILY=PATH", help="read a family's config from PATH"
    )
    parser.add_argument(
        "--no-equality", dest="equality", action="store_false", help="skip the untimed batch-size-1 reference run"
    )
    parser.add_argument("--deadline", type=float, default=0, help="seconds for the whole run, shared out (0: none)")
    parser.add_argument("--json", default="", help="write the table here as JSON")
    parser.add_argument("--markdown", default="", help="write the table here as markdown")
    parser.add_argument("--memory-minutes", default="")
    parser.add_argument("--role", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    parser.add_argument("--config-file", help=argparse.SUPPRESS)
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
    precisions = [p for p in args.precision.split(",") if p]
    unknown = sorted({f for f in families if f not in FAMILIES} | {p for p in precisions if p not in PRECISIONS})
    if unknown:
        raise SystemExit(f"unknown families or precisions: {', '.join(unknown)}")
    args.family_configs = family_configs(args.config)
    oracle = args.oracle if Path(args.oracle).exists() else shutil.which(args.oracle)
    args.oracle = str(Path(oracle).absolute()) if oracle else ""
    import torch

    report = {
        "machine": machine_name(args.device),
        "device": args.device,
        "torch": torch.__version__,
        "seconds": args.seconds,
        "batch_size": args.batch_size,
        "precisions": precisions,
        "reference": "msst 0.1.0 demix at its config's batch size (fp16 autocast on CUDA); HTDemucs: demucs "
        "apply_model, shifts=0",
        "finished": False,
        "rows": [],
    }
    print(
        f"engine benchmark on {report['machine']}: {args.seconds:g} s stereo input, device {args.device}, "
        f"precision {','.join(precisions)}, batch {args.batch_size}; reference: "
        f"{'msst 0.1.0 via ' + args.oracle if args.oracle else 'not available'}",
        flush=True,
    )
    budget = Budget(args.deadline)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.save(work / "mix.npy", synth(args.seconds))
        for i, family in enumerate(families):
            budget.start_family(family, families[i:])
            try:
                rows = bench_family(family, precisions, work, args, budget)
            except Exception as exc:  # one family's failure (its config, its weights) leaves the others measured
                print(f"  {family}: {type(exc).__name__}: {exc}", flush=True)
                rows = [table_row(family, p, note=f"{type(exc).__name__}: {exc}") for p in precisions]
            print(text_line([header for _, header, _, _ in COLUMNS]))
            for row in rows:
                print(text_row(row), flush=True)
            report["rows"] += rows
            write_report(report, args)
            for spent in work.glob(f"{family}*"):  # a 240-s run's outputs and weights: gigabytes on disk
                spent.unlink()
    report["finished"] = True
    write_report(report, args)
    print("\n" + markdown_table(report), flush=True)
    if args.memory_minutes:
        memory_table([float(m) for m in args.memory_minutes.split(",")])


if __name__ == "__main__":
    main()
