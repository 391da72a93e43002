"""Prints the reference facts of tests/engine/test_engine_roformer.py's GOLDEN table, computed with the
reference implementation (msst 0.1.0) on the test's own tiny models, weights (`_fill`) and input (`_audio`).

    PYTHONPATH=src .oracle/bin/python scripts/make_roformer_golden.py     # after scripts/oracle-env.sh

Paste the printed facts into GOLDEN when the test's models or input change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from msst.models.bs_roformer.bs_roformer import BSRoformer
from msst.models.bs_roformer.mel_band_roformer import MelBandRoformer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
import test_engine_roformer as t


def facts(family: str, kwargs: dict, active: list[int] | None) -> dict:
    model = (BSRoformer if family == "bs" else MelBandRoformer)(**kwargs).eval()
    t._fill(model)
    with torch.inference_mode():
        x = t._audio(2 if kwargs["stereo"] else 1)
        out = model(x) if active is None else model(x)[:, active]  # msst has no active_stem_ids: select after
    flat = out.flatten().double()
    picks = [round(i * (flat.numel() - 1) / 6) for i in range(7)]
    return {
        "abs_sum": flat.abs().sum().item(),
        "sq_sum": (flat**2).sum().item(),
        "samples": {i: flat[i].item() for i in picks},
    }


def main() -> None:
    torch.set_num_threads(1)
    for name, (family, kwargs, active, _) in sorted(t.GOLDEN.items()):
        print(name, facts(family, kwargs, active))


if __name__ == "__main__":
    main()
