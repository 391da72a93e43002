"""museval's BSSEval v4 without its package: `import museval` pulls musdb → stempeg, which refuses to import
without the ffmpeg binaries, but the metrics module itself needs only numpy and scipy."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np


def museval_metrics() -> ModuleType:
    spec = importlib.util.find_spec("museval")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("museval is not installed (pip install museval==0.4.1)")
    path = Path(next(iter(spec.submodule_search_locations))) / "metrics.py"
    module_spec = importlib.util.spec_from_file_location("museval_metrics_standalone", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def museval_framewise_sdr(references: np.ndarray, estimates: np.ndarray, window: int, hop: int) -> np.ndarray:
    """museval.evaluate(...)[0] (mode v4) for (sources, channels, samples) arrays: estimates zero-padded or cut
    to the references' length, then bss_eval with v4's settings."""
    refs = references.transpose(0, 2, 1)
    ests = estimates.transpose(0, 2, 1)
    n = refs.shape[1]
    if ests.shape[1] < n:
        ests = np.pad(ests, ((0, 0), (0, n - ests.shape[1]), (0, 0)))
    ests = ests[:, :n]
    sdr, *_ = museval_metrics().bss_eval(
        refs,
        ests,
        window=window,
        hop=hop,
        compute_permutation=False,
        filters_len=512,
        framewise_filters=False,
        bsseval_sources_version=False,
    )
    return sdr
