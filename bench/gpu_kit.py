"""What bench/gpu.sh carries to a GPU machine, and the checks that it is enough (no GPU figures exist yet).

    python bench/gpu_kit.py prepare [--dest .whl] [--local] [--standins DIR]
    python bench/gpu_kit.py check-size [--carry .whl]
    python bench/gpu_kit.py check-call
    python bench/gpu_kit.py simulate-image --venv DIR [--standins DIR]
    python bench/gpu_kit.py check-imports [--site DIR] [--on-device] [--modules all|ours] [--wheel-list PATH]
    python bench/gpu_kit.py config-args --dir DIR
    python bench/gpu_kit.py check-table --json PATH --markdown PATH [--families …] [--precisions …] [--complete]

The device tool's GPU machine (README "Benchmarks") runs Python 3.12 with torch and the packages of
bench/gpu-image.txt, reaches no network, and receives the working tree plus the ignored paths a call carries,
64 MiB in all. `prepare` downloads the wheels of bench/gpu-wheels.txt (what the engine bench and the reference,
msst 0.1.0, import that the image lacks) for that interpreter into `.whl`, and copies the configs the bench reads
from outside the repository (../shared) into `.whl/configs`. `check-imports` imports every module the bench and
the reference use and says where each came from: on the device a failed import is the error; in the dry run
(`simulate-image`: a bare venv that sees only this machine's copies of the image's distributions, plus stand-ins
for those it lacks) a module from neither the image nor the carried wheels is one too, as is a carried wheel
nothing imports or one that shadows the image's own. The other commands check the size, the device call and
the table the run writes. Runs under the device's plain python3: standard library only, except where noted.
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# bench/queue.py would shadow the standard library's `queue`: this folder leaves the import path first.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse
import importlib
import importlib.metadata as metadata
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
IMAGE_LIST = ROOT / "bench" / "gpu-image.txt"
WHEEL_LIST = ROOT / "bench" / "gpu-wheels.txt"
STANDINS_MARK = "[dry-run stand-ins]"
CARRY = ".whl"
CARRY_LIMIT = 64 * 2**20  # the device tool's limit on the working tree plus carried paths
COMMAND_LIMIT = 2000  # characters of one device command
CARRY_PATHS_LIMIT = 8
CALL_TIMEOUT_LIMIT = 600  # seconds of one device command
# The device call the README gives. bench/gpu.sh sizes its run to end well inside timeout_s (install, import
# check, then the engine bench under ENGINE_DEADLINE with a hard stop at ENGINE_STOP), so that the call fits
# twice in a task's 15 minutes of device time with a machine start.
DEVICE_CALL = {"command": "bash bench/gpu.sh", "carry": [CARRY], "timeout_s": 450}
ENGINE_DEADLINE = 300
ENGINE_STOP = 340
GPU_PYTHON = "3.12"  # the image's /opt/torch/.venv/bin/python3 is 3.12.3
GPU_PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(17, 40)] + ["manylinux2014_x86_64", "manylinux1_x86_64"]
# What the engine bench imports (bench/engine.py's roles) and what the reference's demix path imports.
OURS = [
    "numpy",
    "yaml",
    "safetensors.torch",
    "openmvsep.engine.separator",
    "openmvsep.engine.models.roformer",
    "openmvsep.engine.models.mdx23c",
    "openmvsep.engine.models.scnet",
    "openmvsep.engine.models.htdemucs",
    "openmvsep.engine.demucs_apply",
    "demucs.apply",
]
REFERENCE = [
    "msst.utils.model_utils",
    "msst.utils.settings",
    "msst.utils.audio_utils",
    "msst.models.bs_roformer",
    "msst.models.mdx23c_tfc_tdf_v3",
    "msst.models.scnet",
]
# pip's words when the index cannot be reached (as opposed to a pin it does not have).
UNREACHABLE = (
    "NewConnectionError",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Max retries exceeded",
    "ConnectTimeout",
    "Read timed out",
    "Connection refused",
    "No route to host",
)
EXIT_UNREACHABLE = 3


class KitError(Exception):
    """A check that failed; the message says what to change."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages() -> set[str]:
    return {normalize(line) for line in read_lines(IMAGE_LIST)}


def read_lines(path: Path) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()]


def pins(path: Path = WHEEL_LIST) -> tuple[dict[str, str], dict[str, str]]:
    """bench/gpu-wheels.txt: the carried pins, then (after the mark) the dry run's stand-ins, each name -> version."""
    carried: dict[str, str] = {}
    standins: dict[str, str] = {}
    target = carried
    for line in read_lines(path):
        if line == STANDINS_MARK:
            target = standins
            continue
        name, sep, version = line.partition("==")
        if not sep or not version.strip():
            raise KitError(f"{path.name}: {line!r} is not NAME==VERSION")
        target[normalize(name.strip())] = version.strip()
    return carried, standins


def wheel_name_version(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return normalize(name), version


# ------------------------------------------------------------------ prepare (here, with pip and the index)


def pip_download(requirements: list[str], dest: Path, local: bool) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    cmd += ["--timeout", "15", "--retries", "1"]
    if not local:
        cmd += ["--python-version", GPU_PYTHON, "--implementation", "cp"]
        for platform in GPU_PLATFORMS:
            cmd += ["--platform", platform]
    done = subprocess.run(cmd + requirements, capture_output=True, text=True)
    if done.returncode != 0:
        if any(word in done.stderr for word in UNREACHABLE):
            print(f"the package index cannot be reached: {done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
            raise SystemExit(EXIT_UNREACHABLE)
        raise KitError(f"pip download {' '.join(requirements)} failed:\n{done.stderr.strip()[-2000:]}")


def fill_wheels(dest: Path, wanted: dict[str, str], local: bool) -> None:
    """Downloads what `dest` lacks of `wanted` and removes every other wheel: pip installs all of `dest/*.whl`,
    and two versions of one distribution stop the whole install."""
    dest.mkdir(parents=True, exist_ok=True)
    have = {}
    for wheel in dest.glob("*.whl"):
        name, version = wheel_name_version(wheel)
        if wanted.get(name) == version and name not in have:
            have[name] = wheel
        else:
            wheel.unlink()
    missing = [f"{name}=={version}" for name, version in sorted(wanted.items()) if name not in have]
    if missing:
        pip_download(missing, dest, local)
    got = {wheel_name_version(w) for w in dest.glob("*.whl")}
    lacking = sorted(f"{n}=={v}" for n, v in wanted.items() if (n, v) not in got)
    if lacking:
        raise KitError(f"no wheel in {dest} for {', '.join(lacking)}")


def engine_module() -> ModuleType:
    """bench/engine.py as a module, for its FAMILIES (imports numpy: here, on the device and in the dry run)."""
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outside_configs() -> dict[str, Path]:
    """The engine bench's configs that live outside the repository (../shared), which no device call carries."""
    return {family: path for family, path in engine_module().FAMILIES.items() if ROOT not in path.parents}


def copy_configs(dest: Path) -> None:
    folder = dest / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    for family, path in outside_configs().items():
        if not path.is_file():
            raise KitError(f"{family}'s config {path} is missing here: the bench reads it from ../shared")
        shutil.copyfile(path, folder / path.name)


def prepare(dest: Path, local: bool, standins: Path | None) -> None:
    carried, dry_run = pins()
    image = image_packages()
    shadowing = sorted(set(carried) & image)
    if shadowing:
        raise KitError(f"{WHEEL_LIST.name} carries what the image has: {', '.join(shadowing)}")
    strangers = sorted(set(dry_run) - image)
    if strangers:
        raise KitError(f"stand-ins must be the image's own distributions, not {', '.join(strangers)}")
    fill_wheels(dest, carried, local)
    copy_configs(dest)
    if standins:
        fill_wheels(standins, dry_run, local=True)
    size = tree_size(dest)
    print(f"{dest}: {len(list(dest.glob('*.whl')))} wheels and configs, {size / 2**20:.1f} MiB")


# ------------------------------------------------------------------ size and the device call


def tree_size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_symlink() or p.is_file())


def travelling_files() -> list[Path]:
    """Tracked files and untracked ones git does not ignore: what a device call sends besides `carry`."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [ROOT / name for name in sorted(set(done.stdout.split("\0"))) if name]


def check_size(carry: list[Path]) -> int:
    tree = sum(p.lstat().st_size for p in travelling_files() if p.is_symlink() or p.is_file())
    carried = {str(path): tree_size(path) for path in carry}
    total = tree + sum(carried.values())
    parts = ", ".join(f"{path} {size / 2**20:.1f} MiB" for path, size in carried.items())
    print(f"travels: working tree {tree / 2**20:.1f} MiB, {parts}; {total / 2**20:.1f} of 64 MiB")
    if total > CARRY_LIMIT:
        raise KitError(f"{total / 2**20:.1f} MiB would travel, over the device tool's 64 MiB")
    return total


def call_text() -> str:
    """The device call as the README writes it."""
    c = DEVICE_CALL
    return f"command {json.dumps(c['command'])}, carry {json.dumps(c['carry'])}, timeout_s {c['timeout_s']}"


def check_call() -> None:
    command, carry, timeout = DEVICE_CALL["command"], DEVICE_CALL["carry"], DEVICE_CALL["timeout_s"]
    assert isinstance(command, str) and isinstance(carry, list) and isinstance(timeout, int)
    if len(command) > COMMAND_LIMIT:
        raise KitError(f"the device command is {len(command)} characters, over {COMMAND_LIMIT}")
    if len(carry) > CARRY_PATHS_LIMIT or any(len(p) > 200 for p in carry):
        raise KitError("carry names at most 8 paths of at most 200 characters")
    for path in carry:
        # A carried path must be ignored: one that is not travels anyway and counts twice.
        if subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", f"{path}/"]).returncode != 0:
            raise KitError(f"carry path {path} is not ignored by git")
    if not ENGINE_DEADLINE < ENGINE_STOP < timeout <= CALL_TIMEOUT_LIMIT:
        raise KitError(f"the run must stop ({ENGINE_STOP} s) before timeout_s ({timeout}), at most 600")
    script = (ROOT / "bench" / "gpu.sh").read_text()
    if f"DEADLINE={ENGINE_DEADLINE} STOP={ENGINE_STOP}" not in script:
        raise KitError(f"bench/gpu.sh's device run is not the one sized here (DEADLINE={ENGINE_DEADLINE} ...)")
    readme = (ROOT / "README.md").read_text()
    if call_text() not in readme:
        raise KitError(f"README.md does not give the device call as: {call_text()}")
    print(f"device call: {call_text()} ({len(command)} characters)")


# ------------------------------------------------------------------ the image, simulated here


def simulate_image(venv: Path, standins: Path | None) -> None:
    """A bare venv whose site-packages links this machine's copies of the image's distributions, and nothing
    else: the stand-in for the device's /opt/torch/.venv. Image distributions this machine lacks come from
    `standins` (after site-packages); everything else must come from the carried wheels."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)], check=True)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    image = image_packages()
    linked = set()
    for dist in metadata.distributions():
        name = normalize(dist.metadata["Name"] or "")
        if name not in image or name in linked or not dist.files:
            continue
        linked.add(name)
        base = Path(str(dist.locate_file("")))
        for top in {f.parts[0] for f in dist.files if f.parts and f.parts[0] not in ("..", "__pycache__")}:
            if (base / top).exists() and not os.path.lexists(site / top):
                (site / top).symlink_to(base / top)
    if standins:
        (site / "zz-dry-run-standins.pth").write_text(f"{standins.resolve()}\n")
    print(f"{venv}: a bare venv with {len(linked)} of the image's {len(image)} distributions from this machine")


# ------------------------------------------------------------------ imports


def loaded_from(module: ModuleType) -> str:
    file = getattr(module, "__file__", None)
    if file:
        return str(Path(file).resolve())
    paths = list(getattr(module, "__path__", []) or [])
    return str(Path(paths[0]).resolve()) if paths else ""


def check_imports(site: Path | None, on_device: bool, modules: list[str], wheel_list: Path = WHEEL_LIST) -> None:
    """Imports `modules` here and classifies every distribution they loaded: from the image, or carried (loaded
    from `site`, where the wheels were installed; without `site`, pinned in `wheel_list`)."""
    sys.path.insert(0, str(ROOT / "src"))
    errors, notes = [], []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any failure to import is the finding
            errors.append(f"cannot import {name}: {type(exc).__name__}: {exc}")
    image = image_packages()
    carried, _ = pins(wheel_list)
    by_module = metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    site_root, src = str(site.resolve()) if site else None, str((ROOT / "src").resolve())
    seen: dict[str, str] = {}  # distribution -> where it was loaded from
    for top, module in sorted((n, m) for n, m in sys.modules.items() if "." not in n and m is not None):
        where = loaded_from(module)
        if top in stdlib or top in ("__main__", "bench_engine") or not where or where.startswith(src):
            continue
        for dist in by_module.get(top, []):
            seen.setdefault(normalize(dist), where)
        if top not in by_module and site_root and where.startswith(site_root):
            notes.append(f"module {top} from the carried wheels has no distribution record")

    def is_carried(dist: str) -> bool:
        return seen[dist].startswith(site_root) if site_root else dist in carried

    for dist, where in sorted(seen.items()):
        if is_carried(dist) and dist in image:
            errors.append(f"carried {dist} shadows the image's own: drop it from {wheel_list.name}")
        elif not is_carried(dist) and dist not in image:
            errors.append(f"{dist} ({where}) is neither in the image nor carried: pin it in {wheel_list.name}")
    from_site = sorted(d for d in seen if is_carried(d))
    if site_root and set(modules) >= set(OURS + REFERENCE):  # all that the bench imports: a wheel left is waste
        unused = sorted(set(carried) - set(from_site))
        if unused:
            errors.append(f"carried but never imported: {', '.join(unused)} (drop from {wheel_list.name})")
    torch = sys.modules.get("torch")
    if torch is not None:
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
        print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {cuda}")
    print(f"imports: {len(seen)} distributions, carried: {', '.join(from_site) or 'none'}")
    for note in notes:
        print(f"  note: {note}")
    if on_device:  # the real image: what it holds beyond its list is no error there, a failed import is
        errors = [e for e in errors if e.startswith("cannot import")]
    if errors:
        raise KitError("\n".join(errors))


def config_args(folder: Path) -> list[str]:
    """bench/engine.py's --config arguments for the configs `prepare` copied into `folder`."""
    return [f"--config={family}={folder / path.name}" for family, path in sorted(outside_configs().items())]


# ------------------------------------------------------------------ the table the run writes

ROW_KEYS = ("family", "precision", "ours_s", "ref_s", "speedup", "ours_mb", "ref_mb", "snr_ref_db", "snr_bs1_db")
ROW_KEYS += ("snr_fp32_db", "note")


def check_table(json_path: Path, markdown_path: Path, families: list[str], precisions: list[str], complete: bool):
    def no_constants(name: str) -> None:
        raise KitError(f"{json_path.name} holds {name}, which strict JSON has not")

    if not json_path.is_file() or not markdown_path.is_file():
        raise KitError(f"no table was written ({json_path.name}, {markdown_path.name}): see the log")
    report = json.loads(json_path.read_text(), parse_constant=no_constants)
    for key in ("machine", "device", "torch", "seconds", "precisions", "finished", "rows"):
        if key not in report:
            raise KitError(f"{json_path.name} lacks {key!r}")
    rows = report["rows"]
    for row in rows:
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise KitError(f"{json_path.name}: a row lacks {', '.join(missing)}")
        for key in ROW_KEYS[2:-1]:
            if not (row[key] is None or row[key] == "inf" or isinstance(row[key], (int, float))):
                raise KitError(f"{json_path.name}: {key} is {row[key]!r}")
    pairs = [(row["family"], row["precision"]) for row in rows]
    expected = [(f, p) for f in families for p in precisions]
    if complete and pairs != expected:
        raise KitError(f"{json_path.name} has rows {pairs}, expected {expected}")
    if complete:
        gaps = [f"{r['family']} {r['precision']}" for r in rows if r["ours_s"] is None or r["ref_s"] is None]
        if not report["finished"] or gaps:
            raise KitError(f"unmeasured: {', '.join(gaps) or 'the run did not finish'}")

    lines = markdown_path.read_text().splitlines()
    if not lines or not lines[0].startswith(f"### Engine benchmark on {report['machine']}"):
        raise KitError(f"{markdown_path.name} does not open with the machine's name")
    table = [line for line in lines if line.startswith("|")]
    if len(table) != len(rows) + 2:
        raise KitError(f"{markdown_path.name} has {len(table) - 2} table rows, the JSON {len(rows)}")
    widths = {len(line.strip().strip("|").split("|")) for line in table}
    if len(widths) != 1 or not all(line.rstrip().endswith("|") for line in table):
        raise KitError(f"{markdown_path.name}: table rows of different widths {sorted(widths)}")
    if not all(re.fullmatch(r":?-{3,}:?", c.strip()) for c in table[1].strip().strip("|").split("|")):
        raise KitError(f"{markdown_path.name}: the second table line is not a header separator")
    print(f"table: {len(rows)} rows, {widths.pop()} columns, {'finished' if report['finished'] else 'unfinished'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="download the carried wheels and copy the outside configs")
    p.add_argument("--dest", type=Path, default=ROOT / CARRY)
    p.add_argument("--local", action="store_true", help="wheels for this interpreter (the dry run), not the GPU's")
    p.add_argument("--standins", type=Path, help="also download the dry run's stand-ins here")
    p = commands.add_parser("check-size", help="the working tree plus the carried paths fit 64 MiB")
    p.add_argument("--carry", type=Path, action="append", default=[])
    commands.add_parser("check-call", help="the README's device call fits the device tool's limits")
    p = commands.add_parser("simulate-image", help="a bare venv seeing only the image's distributions")
    p.add_argument("--venv", type=Path, required=True)
    p.add_argument("--standins", type=Path)
    p = commands.add_parser("check-imports", help="import what the bench imports and say from where")
    p.add_argument("--site", type=Path, help="where the carried wheels were installed (else: pinned is carried)")
    p.add_argument("--on-device", action="store_true")
    p.add_argument("--modules", choices=["all", "ours"], default="all", help="ours: the engine's side alone")
    p.add_argument("--wheel-list", type=Path, default=WHEEL_LIST)
    p = commands.add_parser("config-args", help="print bench/engine.py's --config arguments")
    p.add_argument("--dir", type=Path, required=True)
    p = commands.add_parser("check-table", help="the JSON and markdown tables are well formed")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--markdown", type=Path, required=True)
    p.add_argument("--families", default="")
    p.add_argument("--precisions", default="")
    p.add_argument("--complete", action="store_true", help="every family and precision measured")
    args = parser.parse_args()
    try:
        if args.command == "prepare":
            prepare(args.dest, args.local, args.standins)
        elif args.command == "check-size":
            check_size(args.carry or [ROOT / CARRY])
        elif args.command == "check-call":
            check_call()
        elif args.command == "simulate-image":
            simulate_image(args.venv, args.standins)
        elif args.command == "check-imports":
            modules = OURS + (REFERENCE if args.modules == "all" else [])
            check_imports(args.site, args.on_device, modules, args.wheel_list)
        elif args.command == "config-args":
            print("\n".join(config_args(args.dir)))
        else:
            split = lambda text: [x for x in text.split(",") if x]  # noqa: E731
            check_table(args.json, args.markdown, split(args.families), split(args.precisions), args.complete)
    except KitError as exc:
        raise SystemExit(f"gpu_kit {args.command}: {exc}") from None


if __name__ == "__main__":
    main()
