"""Notes and the Standard MIDI File that carries them."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

from openmvsep.engine.runtime import ModelUnavailable

TICKS_PER_BEAT = 480
TEMPO_US_PER_BEAT = 500_000  # 120 bpm: one beat is half a second, so a tick is 1/960 s
_TICKS_PER_SECOND = TICKS_PER_BEAT * 1_000_000 / TEMPO_US_PER_BEAT


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    end: float  # seconds
    pitch: int  # MIDI note number
    velocity: int  # 1..127


class MissingRuntime(ModelUnavailable):
    """A Python package a transcriber needs is not installed; the message names the command that installs it.
    A job that needs it fails with that message (a retry would not help) and the worker goes on."""


def midi_file(notes: Iterable[Note], *, program: int = 0, name: str = "") -> bytes:
    """A type-0 Standard MIDI File: one track on channel 0 with `program` (General MIDI, 0 = piano)."""
    try:
        import mido
    except ImportError as e:
        raise MissingRuntime("writing MIDI needs the mido package: pip install mido") from e

    events: list[tuple[int, int, mido.Message]] = []  # (tick, order: note-offs first at a tick, message)
    for n in notes:
        on = round(max(0.0, n.start) * _TICKS_PER_SECOND)
        off = max(on + 1, round(max(0.0, n.end) * _TICKS_PER_SECOND))
        pitch, velocity = min(127, max(0, int(n.pitch))), min(127, max(1, int(n.velocity)))
        events.append((on, 1, mido.Message("note_on", note=pitch, velocity=velocity)))
        events.append((off, 0, mido.Message("note_off", note=pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    if name:
        track.append(mido.MetaMessage("track_name", name=name))
    track.append(mido.MetaMessage("set_tempo", tempo=TEMPO_US_PER_BEAT))
    track.append(mido.Message("program_change", program=program))
    last = 0
    for tick, _order, message in events:
        track.append(message.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track"))
    out = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT, tracks=[track]).save(file=out)
    return out.getvalue()
