"""A Quality Checker upload: a zip of `<song>_<stem>.wav|flac`, checked against its dataset without unpacking.

Nothing is ever extracted, so member names never become paths (no zip-slip by construction; unsafe names are
still refused as a sign of a hostile archive). Stored members are read in place through a window on the zip
file; compressed ones are streamed, and zipfile stops every member at its declared size.

Two stages, so that an upload request never decompresses anything. `check_upload` (the API, before the zip is
stored) reads the central directory only: names, completeness, and each file's declared size against the most
its track can hold (frames x channels x the widest sample, plus `max_header_bytes`) — a zip bomb is refused
there whatever its compression ratio. `open_submission` (the worker) then reads each file's headers, refusing
one that holds more than `max_header_bytes` beside its samples (a padding chunk of zeros deflates to nothing)
before skipping past it, and only then lets libsndfile read headers and samples.

Where MVSep is strict we are strict (exact frame count, the mixture's rate and channel count, every track for
a stem); where clients differ we are liberal (zip root or one top-level folder, `.wav`/`.flac`, any case).
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import soundfile as sf

from openmvsep.quality.datasets import Dataset, Song

AUDIO_EXTENSIONS = (".wav", ".flac")
# Bytes per sample of libsndfile's subtypes. The widest (a WAV of 64-bit floats) bounds a file's size before its
# header is read.
SAMPLE_BYTES = {
    **dict.fromkeys(("PCM_S8", "PCM_U8", "ULAW", "ALAW"), 1),
    "PCM_16": 2,
    "PCM_24": 3,
    **dict.fromkeys(("PCM_32", "FLOAT"), 4),
    "DOUBLE": 8,
}
MAX_BYTES_PER_SAMPLE = max(SAMPLE_BYTES.values())
# FLAC frame headers, subframe headers and CRCs beside the samples: well under 1 % at any encoder's block size
# even when a frame stores its samples verbatim.
FLAC_FRAMING = 1 / 16
IGNORED_PREFIXES = ("__macosx/", ".")  # what archivers add beside the files


class SubmissionError(Exception):
    """The upload cannot be scored; the message is MVSep-style and shown to the submitter."""


@dataclass(frozen=True)
class Limits:
    max_members: int = 10_000
    max_unpacked_bytes: int = 16 * 1024**3
    max_compression_ratio: float = 100.0  # audio barely deflates; an archive that shrank 100x is a bomb
    # What a file may hold beside its samples (headers, tags, cover art, padding chunks): never expanded past this.
    max_header_bytes: int = 1024**2


class _Window(io.RawIOBase):
    """A read-only file over bytes [offset, offset + size) of another file: a stored zip member in place."""

    def __init__(self, path: Path, offset: int, size: int):
        self._file = open(path, "rb")
        self._offset, self._size, self._pos = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = min(max(0, base + pos), self._size)
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        self._file.seek(self._offset + self._pos)
        got = self._file.readinto(memoryview(buffer)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        # The member is read once: let the kernel drop it rather than push out pages that are read again
        # (the dataset's references, other entries' files).
        if hasattr(os, "posix_fadvise") and not self._file.closed:
            os.posix_fadvise(self._file.fileno(), self._offset, self._size, os.POSIX_FADV_DONTNEED)
        self._file.close()
        super().close()


@dataclass(frozen=True)
class Member:
    song: str
    stem: str
    info: zipfile.ZipInfo

    @property
    def filename(self) -> str:
        return PurePosixPath(self.info.filename).name


class Submission:
    """A validated upload: which (song, stem) files it has, and a way to read each one."""

    def __init__(self, path: Path, dataset: Dataset, members: dict[tuple[str, str], Member], stems: tuple[str, ...]):
        self.path = Path(path)
        self.dataset = dataset
        self.members = members
        self.stems = stems  # scored stems, in the dataset's display order

    @contextmanager
    def open(self, song: str, stem: str) -> Iterator[sf.SoundFile]:
        member = self.members[(song, stem)]
        raw = self._raw(member.info)
        try:
            with sf.SoundFile(raw) as f:
                yield f
        finally:
            raw.close()

    def _raw(self, info: zipfile.ZipInfo) -> io.IOBase:
        if info.compress_type == zipfile.ZIP_STORED:
            return _Window(self.path, _data_offset(self.path, info), info.file_size)
        archive = zipfile.ZipFile(self.path)
        return _ClosingStream(archive.open(info), archive)


class _ClosingStream(io.RawIOBase):
    """A compressed member's stream that also closes its archive."""

    def __init__(self, stream, archive: zipfile.ZipFile):
        self._stream, self._archive = stream, archive

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        return self._stream.seek(pos, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        self._archive.close()
        super().close()


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a member's bytes start: after its local header, whose name and extra lengths may differ from the
    central directory's."""
    # zipfile's local-header constants are undocumented, so typeshed's zipfile stub leaves them out.
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(zipfile.sizeFileHeader)  # type: ignore[attr-defined]  # not in typeshed
    fields = struct.unpack(zipfile.structFileHeader, header)  # type: ignore[attr-defined]  # not in typeshed
    if fields[0] != zipfile.stringFileHeader:  # type: ignore[attr-defined]  # not in typeshed
        raise SubmissionError(f"The zip file is damaged: bad header for {info.filename}")
    return (
        info.header_offset
        + zipfile.sizeFileHeader  # type: ignore[attr-defined]  # not in typeshed
        + fields[zipfile._FH_FILENAME_LENGTH]  # type: ignore[attr-defined]  # not in typeshed
        + fields[zipfile._FH_EXTRA_FIELD_LENGTH]  # type: ignore[attr-defined]  # not in typeshed
    )


def _is_unsafe(name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    return name.startswith(("/", "\\")) or ".." in pure.parts or (len(name) > 1 and name[1] == ":")


def _match(filename: str, songs: dict[str, str], stems: tuple[str, ...]) -> tuple[str, str] | None:
    """`<song>_<stem>.<ext>` → (song, stem), case-insensitively; None for files that are not a scored stem."""
    lower = filename.lower()
    ext = next((e for e in AUDIO_EXTENSIONS if lower.endswith(e)), None)
    if ext is None:
        return None
    base = lower[: -len(ext)]
    for stem in sorted(stems, key=len, reverse=True):  # "back-instrum" before "instrum"
        if base.endswith("_" + stem):
            song = songs.get(base[: -len(stem) - 1])
            if song is not None:
                return song, stem
    return None


def check_upload(path: Path, dataset: Dataset, limits: Limits = Limits()) -> tuple[str, ...]:
    """The checks an upload gets before it is stored, from the zip's central directory alone: names, completeness
    and each file's declared size against what its track can hold. Nothing is decompressed: the worker reads the
    audio (open_submission). Returns the stems the upload scores."""
    _, stems = _read_directory(path, dataset, limits)
    return stems


def open_submission(path: Path, dataset: Dataset, limits: Limits = Limits()) -> Submission:
    """Check an upload against its dataset (names, completeness, sizes, layouts, headers) and return it ready to
    score."""
    members, stems = _read_directory(path, dataset, limits)
    submission = Submission(Path(path), dataset, members, stems)
    # Every file's layout before any header: libsndfile walks past every chunk of a file it opens, which for a
    # compressed member means expanding it, so a padded file must be refused having had its headers read only.
    for member in members.values():
        _check_layout(submission, member, limits)
    for (song, stem), member in members.items():
        _check_header(submission, dataset, song, stem, member, limits)
    return submission


def track_bytes(song: Song, limits: Limits) -> int:
    """The most a file of `song` may unpack to: its samples at the widest sample format, and headers."""
    return song.frames * song.channels * MAX_BYTES_PER_SAMPLE + limits.max_header_bytes


def _read_directory(
    path: Path, dataset: Dataset, limits: Limits
) -> tuple[dict[tuple[str, str], Member], tuple[str, ...]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise SubmissionError("The uploaded file is not a valid zip archive") from None
    with archive:
        infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise SubmissionError(f"The zip file has too many files ({len(infos)}; the limit is {limits.max_members})")
    for info in infos:
        if _is_unsafe(info.filename):
            raise SubmissionError(f"The zip file contains an unsafe path: {info.filename}")
    files = [
        i
        for i in infos
        if not i.is_dir()
        and not PurePosixPath(i.filename.replace("\\", "/")).name.lower().startswith(IGNORED_PREFIXES)
        and not i.filename.lower().startswith(IGNORED_PREFIXES)
    ]
    members = _scored_members(files, dataset)
    _check_sizes(members, dataset, limits)
    return members, _check_complete(members, dataset)


def _scored_members(files: list[zipfile.ZipInfo], dataset: Dataset) -> dict[tuple[str, str], Member]:
    # Files sit at the root or inside one top-level folder; deeper nesting is not a layout any client makes.
    parts = [PurePosixPath(i.filename.replace("\\", "/")).parts for i in files]
    tops = {p[0] for p in parts if len(p) > 1}
    nested_ok = len(tops) == 1 and all(len(p) <= 2 for p in parts)
    songs = {s.name.lower(): s.name for s in dataset.songs}
    members: dict[tuple[str, str], Member] = {}
    for info, p in zip(files, parts):
        if len(p) > 2 or (len(p) == 2 and not nested_ok):
            continue
        key = _match(p[-1], songs, dataset.stems)
        if key is None:
            continue
        if key in members:
            raise SubmissionError(
                f"Duplicate file for song {key[0]}, stem {key[1]}: {members[key].filename} and {p[-1]}"
            )
        members[key] = Member(key[0], key[1], info)
    return members


def _check_sizes(members: dict[tuple[str, str], Member], dataset: Dataset, limits: Limits) -> None:
    """Declared sizes bound what reading a member can expand to (zipfile stops each member there)."""
    songs = {s.name: s for s in dataset.songs}
    for member in members.values():
        info = member.info
        if info.flag_bits & 0x1:
            raise SubmissionError(f"Encrypted zip files are not supported: {info.filename}")
        song = songs[member.song]
        most = track_bytes(song, limits)
        if info.file_size > most:
            raise SubmissionError(
                f"{member.filename} unpacks to {info.file_size} bytes, more than a file of {song.frames} frames "
                f"x {song.channels} channels can hold ({most} bytes); the zip file was refused (a zip bomb?)"
            )
    unpacked = sum(m.info.file_size for m in members.values())
    packed = sum(m.info.compress_size for m in members.values())
    if unpacked > limits.max_unpacked_bytes:
        raise SubmissionError(f"The zip file unpacks to {unpacked} bytes; the limit is {limits.max_unpacked_bytes}")
    if unpacked > 1024**2 and unpacked > limits.max_compression_ratio * max(packed, 1):
        raise SubmissionError("The zip file is suspiciously compressed (a zip bomb?) and was refused")


def _check_complete(members: dict[tuple[str, str], Member], dataset: Dataset) -> tuple[str, ...]:
    present = [stem for stem in dataset.stems if any(k[1] == stem for k in members)]
    if not present:
        example = f"{dataset.songs[0].name}_{dataset.stems[0]}.wav"
        raise SubmissionError(
            f"No files to score were found in the zip. Expected files like {example} for stems: "
            + ", ".join(dataset.stems)
        )
    for stem in present:
        missing = [s.name for s in dataset.songs if (s.name, stem) not in members]
        if missing:
            shown = ", ".join(f"{m}_{stem}.wav" for m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise SubmissionError(f"Missing files for stem {stem}: {shown}{more}")
    return tuple(present)


def _check_layout(submission: Submission, member: Member, limits: Limits) -> None:
    """Refuse a file that holds more than `max_header_bytes` beside its samples, reading its headers only."""
    size = member.info.file_size
    raw = submission._raw(member.info)
    try:
        start, end = _audio_span(_Headers(raw, member.filename, limits.max_header_bytes), size)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        raise SubmissionError(f"Can't read audio file {member.filename}: {e}") from None
    finally:
        raw.close()
    beside = start + (size - end)
    if beside > limits.max_header_bytes:
        raise SubmissionError(
            f"{member.filename} holds {beside} bytes beside its audio (headers, tags, padding); "
            f"the limit is {limits.max_header_bytes}"
        )


class _Headers:
    """A file's headers, read in order; nothing past `most` bytes from the start is ever read or skipped over
    (skipping a compressed member's bytes expands them)."""

    def __init__(self, raw: io.IOBase, name: str, most: int):
        self.raw, self.name, self.most, self.pos = raw, name, most, 0

    def read(self, n: int) -> bytes:
        self._reserve(n, "headers")
        data = bytearray()
        while len(data) < n:
            got = self.raw.read(n - len(data))
            if not got:
                raise SubmissionError(f"Can't read audio file {self.name}: it ends inside its headers")
            data += got
        self.pos += n
        return bytes(data)

    def skip(self, n: int, what: str) -> None:
        self._reserve(n, what)
        self.raw.seek(n, io.SEEK_CUR)
        self.pos += n

    def _reserve(self, n: int, what: str) -> None:
        if self.pos + n > self.most:
            raise SubmissionError(
                f"{self.name} holds {what} of {n} bytes before its audio; a file may hold at most {self.most} "
                "bytes beside its audio (headers, tags, padding)"
            )


def _audio_span(h: _Headers, size: int) -> tuple[int, int]:
    """Where a WAV's or FLAC's samples start and end, in bytes, from its headers."""
    magic = h.read(4)
    if magic[:3] == b"ID3":  # an ID3v2 tag that some taggers put first; libsndfile skips it
        rest = h.read(6)  # revision, flags, size (4 bytes of 7 bits)
        tag = sum(b << (7 * i) for i, b in enumerate(reversed(rest[2:6]))) + (10 if rest[1] & 0x10 else 0)
        h.skip(tag, "an ID3 tag")
        magic = h.read(4)
    if magic in (b"RIFF", b"RIFX", b"RF64"):
        return _wav_span(h, big_endian=magic == b"RIFX", size=size)
    if magic == b"fLaC":
        while True:  # metadata blocks: 1 bit "last", 7 bits type, 24 bits length
            block = h.read(4)
            h.skip(int.from_bytes(block[1:], "big"), f"a FLAC metadata block (type {block[0] & 0x7F})")
            if block[0] & 0x80:
                return h.pos, size
    raise SubmissionError(f"Can't read audio file {h.name}: it is neither a WAV nor a FLAC file")


def _wav_span(h: _Headers, *, big_endian: bool, size: int) -> tuple[int, int]:
    order = ">" if big_endian else "<"
    h.read(4)  # the RIFF size, which libsndfile does not trust either
    if h.read(4) != b"WAVE":
        raise SubmissionError(f"Can't read audio file {h.name}: it is a RIFF file but not a WAV")
    rf64_data: int | None = None
    while True:
        chunk, length = struct.unpack(order + "4sI", h.read(8))
        if chunk == b"data":
            if length == 0xFFFFFFFF and rf64_data is not None:  # RF64: the real size is in the ds64 chunk
                length = rf64_data
            start = h.pos
            # 0 and 0xFFFFFFFF: written by a streaming writer that never came back; the samples run to the end
            return start, size if length in (0, 0xFFFFFFFF) else min(size, start + length)
        padded = length + (length & 1)  # chunks are word-aligned
        if chunk == b"ds64" and length >= 16:
            rf64_data = struct.unpack("<Q", h.read(padded)[8:16])[0]
        else:
            h.skip(padded, f"a {ascii(chunk.decode('latin-1'))} chunk")


def _check_header(
    submission: Submission, dataset: Dataset, song: str, stem: str, member: Member, limits: Limits
) -> None:
    expected = next(s for s in dataset.songs if s.name == song)
    name = member.filename
    try:
        with submission.open(song, stem) as f:
            rate, channels, frames, container, subtype = f.samplerate, f.channels, f.frames, f.format, f.subtype
    except (sf.LibsndfileError, RuntimeError, zipfile.BadZipFile, NotImplementedError, OSError) as e:
        raise SubmissionError(f"Can't read audio file {name}: {e}") from None
    if rate != dataset.sample_rate:
        raise SubmissionError(f"Different sample rate for wav file {name}: {rate} != {dataset.sample_rate}")
    if channels != expected.channels:
        raise SubmissionError(f"Different number of channels for wav file {name}: {channels} != {expected.channels}")
    if frames != expected.frames:
        raise SubmissionError(f"Different shapes for wav file {name}: {frames} != {expected.frames}")
    # A WAV's samples are exactly its data chunk (_check_layout); a FLAC's frames are bounded here, now that its
    # sample format is known, so no file is read much past what its own samples need.
    width = SAMPLE_BYTES.get(subtype)
    if container == "FLAC" and width is not None:
        samples = frames * channels * width
        most = samples + int(samples * FLAC_FRAMING) + limits.max_header_bytes
        if member.info.file_size > most:
            raise SubmissionError(
                f"{name} is {member.info.file_size} bytes, more than {frames} frames of {subtype} FLAC need "
                f"({most} bytes)"
            )
