"""Reference mastering (MVSep "Matchering"): make a target sound as loud and as bright as a reference.

A thin wrapper around the ``matchering`` package, which only takes file paths:
the arrays go through float WAV files in a private temporary directory.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings

import numpy as np
import soundfile as sf
import soxr

from openmvsep.errors import UserError

with warnings.catch_warnings():
    # matchering 2.0.6 imports scipy.ndimage.filters, deprecated in current SciPy; not our concern.
    warnings.simplefilter("ignore", DeprecationWarning)
    import matchering
    from matchering.log import ModuleError

# Matchering works at 44.1 kHz internally and returns its result at that rate.
MATCHERING_SAMPLE_RATE = 44100

_log = logging.getLogger(__name__)


class MasteringError(UserError):
    """The inputs cannot be mastered; the message is meant for the end user."""


def match_master(
    target: np.ndarray, target_rate: int, reference: np.ndarray, reference_rate: int
) -> tuple[dict[str, np.ndarray], int]:
    """Master ``target`` to match ``reference``; both shaped (channels, frames), mono or stereo.

    Returns ``({"result": matched}, 44100)`` with ``matched`` a (2, frames) float32 array.
    Raises :class:`MasteringError` for inputs matchering refuses (too short, too long,
    identical to each other, ...).
    """
    target = _as_stereo_44k(target, target_rate, "target")
    reference = _as_stereo_44k(reference, reference_rate, "reference")
    _route_matchering_log()

    with tempfile.TemporaryDirectory(prefix="openmvsep-matchering-") as workdir:
        target_path = os.path.join(workdir, "target.wav")
        reference_path = os.path.join(workdir, "reference.wav")
        result_path = os.path.join(workdir, "result.wav")
        # Float WAV: lossless for our float32 arrays and tolerant of peaks above 1.0.
        sf.write(target_path, target.T, MATCHERING_SAMPLE_RATE, subtype="FLOAT")
        sf.write(reference_path, reference.T, MATCHERING_SAMPLE_RATE, subtype="FLOAT")
        del target, reference
        try:
            matchering.process(
                target=target_path,
                reference=reference_path,
                # Limiter on (matchering's default), written as float so nothing is quantised.
                results=[matchering.Result(result_path, "FLOAT")],
                config=matchering.Config(temp_folder=workdir),
            )
        except ModuleError as error:
            raise MasteringError(_human_message(error)) from error
        matched, rate = sf.read(result_path, dtype="float32", always_2d=True)

    return {"result": np.ascontiguousarray(matched.T)}, int(rate)


def _as_stereo_44k(audio: np.ndarray, sample_rate: int, name: str) -> np.ndarray:
    """(2, frames) float32 at matchering's internal rate; mono is duplicated."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[np.newaxis, :]
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        raise MasteringError(f"The {name} must be mono or stereo audio.")
    if audio.shape[1] == 0:
        raise MasteringError(f"The {name} audio is empty.")
    if not np.all(np.isfinite(audio)):
        raise MasteringError(f"The {name} audio contains invalid samples.")
    if sample_rate <= 0:
        raise MasteringError(f"The {name} has an invalid sample rate.")
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    if sample_rate != MATCHERING_SAMPLE_RATE:
        # soxr is much faster than the resampy fallback matchering would use.
        audio = soxr.resample(audio.T, sample_rate, MATCHERING_SAMPLE_RATE).T
    return np.ascontiguousarray(audio, dtype=np.float32)


def _route_matchering_log() -> None:
    """Send matchering's messages to our logger instead of letting anyone print them.

    matchering keeps its handlers in global state, so set them on every call.
    """
    matchering.log(
        default_handler=_log.debug,
        warning_handler=_log.info,
        show_codes=False,
    )


def _human_message(error: ModuleError) -> str:
    # matchering formats its errors as "<code>: <explanation>"; the code means nothing to users.
    message = re.sub(r"^\s*\d+\s*:\s*", "", str(error)).strip()
    return message or "Mastering failed."
