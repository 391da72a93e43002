"""Audio I/O for the engine: decode what ffmpeg reads, resample with soxr, write MVSep's formats.

Decoding goes through PyAV for every input, so one code path gives one answer (decode.py);
probe.py describes a file from the same opened stream (source.py), its length counted from the
stream and not taken from the headers (length.py); encode.py writes the six
output formats. Everything streams: decoded frames, the soxr resampler (resample.py) and the
encoders all work block by block, so memory does not grow with the length of a track.

This package knows nothing of HTTP or databases.
"""

from openmvsep.engine.audio.decode import iter_audio, read_audio
from openmvsep.engine.audio.encode import FORMATS, AudioWriter, OutputFormat, write_audio
from openmvsep.engine.audio.length import LENGTH_SLACK_SECONDS, TooLong
from openmvsep.engine.audio.probe import AudioInfo, probe
from openmvsep.engine.audio.source import AudioError, PathLike

__all__ = [
    "FORMATS",
    "LENGTH_SLACK_SECONDS",
    "AudioError",
    "AudioInfo",
    "AudioWriter",
    "OutputFormat",
    "PathLike",
    "TooLong",
    "iter_audio",
    "probe",
    "read_audio",
    "write_audio",
]
