"""Basic Pitch (Spotify's ICASSP 2022 note transcriber) run from the ONNX model its `basic-pitch` wheel ships.

Only the model file is used (the package itself is not imported: its import looks for TensorFlow, CoreML and
TFLite first). Facts of the published model this code relies on:

- input: mono audio at 22050 Hz in windows of 43844 samples (two seconds less one hop), shape (batch, 43844, 1);
- outputs per window: 172 frames at 22050 / 256 frames a second, of 88 semitone bins from A0 (MIDI 21) for
  the note activation and the onset posteriorgrams, and of 264 bins (three a semitone) for the pitch contour.

The note extraction is ours: each onset peak above a threshold starts a note of its pitch, which lasts while
the note activation stays above another threshold (short dips bridged), until the next onset of that pitch.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openmvsep.engine.transcription.notes import MissingRuntime, Note

SAMPLE_RATE = 22050
HOP = 256  # samples per output frame
WINDOW = 43844  # samples the model takes at once
FRAMES_PER_WINDOW = 172
LOWEST_PITCH = 21  # MIDI number of the first of the 88 bins (A0)
PITCHES = 88
MODEL_IN_WHEEL = ("saved_models", "icassp_2022", "nmp.onnx")  # inside the basic_pitch package
# Frames dropped at each edge of a window, where the model sees no context; windows overlap by twice this.
EDGE_FRAMES = 15
HOP_FRAMES = FRAMES_PER_WINDOW - 2 * EDGE_FRAMES  # whole frames, so that windows join on the frame grid
WINDOWS_PER_RUN = 16  # windows given to onnxruntime in one call: bounds memory on long inputs


@dataclass(frozen=True)
class NoteRules:
    onset_threshold: float = 0.5  # an onset peak at least this likely starts a note
    frame_threshold: float = 0.3  # a note lasts while its activation is at least this
    min_frames: int = 6  # notes shorter than this (about 70 ms) are dropped
    bridged_frames: int = 3  # dips below frame_threshold this short do not end a note


def model_path() -> Path | None:
    """The ONNX model of the installed `basic-pitch` wheel, or None when the wheel is not installed."""
    spec = importlib.util.find_spec("basic_pitch")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*MODEL_IN_WHEEL)
    return path if path.is_file() else None


class BasicPitch:
    def __init__(self, path: Path, *, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise MissingRuntime(
                "Basic Pitch needs the onnxruntime package: pip install onnxruntime (`make install` adds it)"
            ) from e
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        outputs = self.session.get_outputs()
        # The two 88-bin outputs are the note activation and the onsets, in the order of their names
        # (the exported signature sorts them: contour, note, onset); the 264-bin one is the contour.
        semitone = sorted((o.name for o in outputs if o.shape[-1] == PITCHES), key=_output_order)
        if len(semitone) != 2:
            raise ValueError(f"{path} does not look like Basic Pitch: outputs {[o.shape for o in outputs]}")
        self.note_output, self.onset_output = semitone

    def posteriorgrams(self, mono: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(note activation, onsets), each (frames, 88), for mono audio at SAMPLE_RATE."""
        n_frames = int(np.ceil(len(mono) / HOP))
        padded = np.concatenate([np.zeros(EDGE_FRAMES * HOP, np.float32), mono.astype(np.float32)])
        n_windows = max(1, int(np.ceil(n_frames / HOP_FRAMES)))
        notes, onsets = [], []
        for first in range(0, n_windows, WINDOWS_PER_RUN):
            batch = np.zeros((min(WINDOWS_PER_RUN, n_windows - first), WINDOW, 1), np.float32)
            for i in range(len(batch)):
                start = (first + i) * HOP_FRAMES * HOP
                piece = padded[start : start + WINDOW]
                batch[i, : len(piece), 0] = piece
            note, onset = self.session.run([self.note_output, self.onset_output], {self.input_name: batch})
            keep = slice(EDGE_FRAMES, EDGE_FRAMES + HOP_FRAMES)
            notes.extend(note[:, keep])
            onsets.extend(onset[:, keep])
        return np.concatenate(notes)[:n_frames], np.concatenate(onsets)[:n_frames]

    def transcribe(self, mono: np.ndarray, rules: NoteRules | None = None) -> list[Note]:
        note, onset = self.posteriorgrams(mono)
        return extract_notes(note, onset, rules or NoteRules())


def _output_order(name: str) -> tuple[int, str]:
    tail = name.rsplit(":", 1)[-1]
    return (int(tail), name) if tail.isdigit() else (0, name)


def extract_notes(note: np.ndarray, onset: np.ndarray, rules: NoteRules) -> list[Note]:
    """Notes from the posteriorgrams (frames, 88): onset peaks start them, the activation sustains them."""
    frames = note.shape[0]
    seconds = HOP / SAMPLE_RATE
    before = np.vstack([np.zeros((1, onset.shape[1])), onset[:-1]])
    after = np.vstack([onset[1:], np.zeros((1, onset.shape[1]))])
    peaks = (onset >= rules.onset_threshold) & (onset >= before) & (onset > after)
    out: list[Note] = []
    for bin_ in range(note.shape[1]):
        starts = np.flatnonzero(peaks[:, bin_])
        for i, start in enumerate(starts.tolist()):
            stop = int(starts[i + 1]) if i + 1 < len(starts) else frames
            end, quiet = start + 1, 0
            for t in range(start + 1, stop):
                if note[t, bin_] >= rules.frame_threshold:
                    end, quiet = t + 1, 0
                else:
                    quiet += 1
                    if quiet > rules.bridged_frames:
                        break
            if end - start < rules.min_frames:
                continue
            velocity = int(round(127 * float(np.mean(note[start:end, bin_]))))
            out.append(Note(start * seconds, end * seconds, LOWEST_PITCH + bin_, max(1, velocity)))
    out.sort(key=lambda n: (n.start, n.pitch))
    return out
