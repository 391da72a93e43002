"""Job hashes and file names as MVSep forms them (clients parse both)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from openmvsep.algorithms.choice import Choice

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def slug(text: str, *, fallback: str = "audio", limit: int = 80) -> str:
    s = _NON_ALNUM.sub("-", text.lower()).strip("-")[:limit].strip("-")
    return s or fallback


def split_name(filename: str) -> tuple[str, str]:
    """('My Song', 'mp3') from 'My Song.MP3'; the extension is lower-cased and may be empty."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem or not re.fullmatch(r"[A-Za-z0-9]{1,8}", ext):
        return base, ""
    return stem, ext.lower()


def job_hash(created: datetime, filename: str) -> str:
    """`YYYYMMDDhhmmss-<10 random hex>-<slug>.<ext>`; ALCLI splits it on '-' to name downloads.

    MVSep's middle part is a digest of the input; ours is random, so that nobody who has the same file (and
    guesses its name and the second) can derive another user's hash, and from it the links to their files."""
    stem, ext = split_name(filename)
    return f"{created:%Y%m%d%H%M%S}-{secrets.token_hex(5)}-{slug(stem)}" + (f".{ext}" if ext else "")


# Every stored file a client downloads lives in a folder named by a random token of its own (128 bits), so
# that its URL cannot be derived from the job hash, the input, its name or the time. Older rows keep their
# flat keys (`temp/<hash>`), which /storage still serves.
STORAGE_TOKEN = re.compile(r"[0-9a-f]{32}")


def storage_token() -> str:
    return secrets.token_hex(16)


def input_key(token: str, job_hash_value: str, role: str | None = None) -> str:
    """`temp/<token>/<hash>` for the main input, `temp/<token>/<hash>.<role>` for the others."""
    return f"temp/{token}/{job_hash_value}" + (f".{role}" if role else "")


def output_key(token: str, storage_name: str) -> str:
    return f"processed/{token}/{storage_name}"


def hash_stem(job_hash_value: str) -> str:
    stem, ext = split_name(job_hash_value)
    return stem if ext else job_hash_value


def algorithm_tag(algorithm_name: str) -> str:
    """A short tag of the algorithm for file names: 'MelBand Roformer (vocals, …)' -> 'melbandroformer'."""
    head = algorithm_name.split("(")[0]
    words = _NON_ALNUM.split(head.lower())
    return "".join(w for w in words if w)[:24] or "sep"


def options_tag(choice: Choice) -> str:
    """'mt_dsp' for a choice of model_type dsp: initials of each server key, then its (slugged) value."""
    parts = []
    for key, value in choice.items():
        initials = "".join(w[0] for w in key.split("_") if w)
        if len(value) <= 16:  # free-text fields (prompts) do not belong in a file name
            parts.append(f"{initials}_{slug(value, fallback='x', limit=16)}")
    return "_".join(parts)


def stem_token(stem: str) -> str:
    """The stem as the last `_`-separated token of a name (clients take the text after the last '_')."""
    return slug(stem, fallback="stem").replace("_", "-")


def output_names(
    job_hash_value: str,
    input_filename: str,
    algorithm_name: str,
    choice: Choice,
    stem: str,
    extension: str,
    long_names: bool,
) -> tuple[str, str]:
    """(storage file name, suggested download name) for one output stem."""
    tag = algorithm_tag(algorithm_name)
    opts = options_tag(choice)
    middle = "_".join(p for p in (tag, opts) if p)
    token = stem_token(stem)
    storage = f"{hash_stem(job_hash_value)}_{middle}_{token}.{extension}"
    input_stem = slug(split_name(input_filename)[0])
    if long_names:
        detail = slug(algorithm_name, limit=60)
        download = f"{input_stem}_{detail}_{opts or 'default'}_{token}.{extension}"
    else:
        download = f"{input_stem}_{middle}_{token}.{extension}"
    return storage, download


def human_size(n_bytes: int) -> str:
    return f"{n_bytes / (1024 * 1024):.2f} MB"
