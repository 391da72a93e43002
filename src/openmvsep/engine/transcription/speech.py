"""Speech to text with OpenAI's Whisper (the `openai-whisper` package, MIT; its published checkpoints, MIT), and
the transcript as plain text, SubRip subtitles and JSON segments.

Checkpoints are the files the package itself downloads (`{"dims": ..., "model_state_dict": ...}`); they load
with `weights_only=True` into the package's own model class, so a file is only ever tensors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openmvsep.engine.runtime import ModelUnavailable
from openmvsep.engine.transcription.notes import MissingRuntime

SAMPLE_RATE = 16000  # Whisper's input rate
FIX = "pip install 'openmvsep[speech]' (the openai-whisper package)"


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    language: str
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "\n".join(s.text for s in self.segments if s.text)


def load_whisper(path: Path, device: str | None = None) -> Any:
    import torch

    from openmvsep.engine.separator import resolve_device

    try:
        from whisper.model import ModelDimensions, Whisper
    except ImportError as e:
        raise MissingRuntime(f"Whisper is not installed: {FIX}") from e
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = Whisper(ModelDimensions(**checkpoint["dims"]))
        model.load_state_dict(checkpoint["model_state_dict"])
    except Exception as e:  # a corrupt or foreign file: the same file fails again, so the job fails
        raise ModelUnavailable(f"the Whisper checkpoint {path.name} cannot be loaded: {e}") from e
    return model.to(resolve_device(device)).eval()


def to_input_rate(mono: np.ndarray, rate: int) -> np.ndarray:
    import soxr

    return mono if rate == SAMPLE_RATE else soxr.resample(mono.astype(np.float32), rate, SAMPLE_RATE, "HQ")


def transcribe(model: Any, mono: np.ndarray, language: str | None = None) -> Transcript:
    """`mono` at SAMPLE_RATE. Each 30-second window is decoded greedily (temperature 0, no sampling fallback):
    the same input gives the same transcript, whichever worker runs it."""
    import torch

    on_gpu = next(model.parameters()).device.type == "cuda"
    with torch.inference_mode():
        result = model.transcribe(
            np.ascontiguousarray(mono, dtype=np.float32), language=language, fp16=on_gpu, verbose=None, temperature=0.0
        )
    segments = [Segment(float(s["start"]), float(s["end"]), str(s["text"]).strip()) for s in result["segments"]]
    return Transcript(str(result.get("language") or language or ""), segments)


def _srt_time(seconds: float) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


def as_text(t: Transcript) -> bytes:
    return (t.text + "\n").encode("utf-8") if t.text else b""


def as_srt(t: Transcript) -> bytes:
    """SubRip: numbered cues `HH:MM:SS,mmm --> HH:MM:SS,mmm`, each followed by its text and a blank line."""
    cues = [
        f"{i}\n{_srt_time(s.start)} --> {_srt_time(s.end)}\n{s.text}\n"
        for i, s in enumerate((s for s in t.segments if s.text), start=1)
    ]
    return "\n".join(cues).encode("utf-8")


def as_json(t: Transcript) -> bytes:
    body = {"language": t.language, "text": t.text, "segments": [asdict(s) for s in t.segments]}
    return json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8")
