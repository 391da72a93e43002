"""The `tags` of a finished job in `separation/get`: the input file described as getID3 does.

MVSep runs its uploads through getID3 (a PHP library) and returns part of the answer, and clients
read it: `tags.audio` (format, rate, channels, bitrate, mode) with one entry per stream, and
`tags.tags`, the file's tags under the family getID3 files them in (id3v2, vorbiscomment,
quicktime, ...) and getID3's key names. The engine describes files in neutral terms
(`AudioInfo.media`); this module turns that description into getID3's shape and names.
"""

from __future__ import annotations

from typing import Any

# Which getID3 tag family a container's metadata belongs to, by ffmpeg's container name.
_TAG_FAMILIES = {
    "mp3": "id3v2",
    "aac": "id3v2",
    "aiff": "id3v2",
    "flac": "vorbiscomment",
    "ogg": "vorbiscomment",
    "mov,mp4,m4a,3gp,3g2,mj2": "quicktime",
    "wav": "riff",
    "w64": "riff",
    "asf": "asf",
    "matroska,webm": "matroska",
    "ape": "ape",
    "wv": "ape",
}
# ffmpeg's generic metadata keys → the names getID3 uses for that family.
_TAG_KEY_NAMES = {
    "id3v2": {
        "track": "track_number",
        "date": "year",
        "album_artist": "band",
        "disc": "part_of_a_set",
        "tlen": "length",
        "copyright": "copyright_message",
        "encoder": "encoder_settings",
    },
    "vorbiscomment": {"track": "tracknumber", "album_artist": "albumartist", "disc": "discnumber"},
    "quicktime": {"track": "track_number", "date": "creation_date", "encoder": "encoding_tool"},
}


def getid3_tags(media: dict[str, Any]) -> dict[str, Any]:
    """getID3's `audio` (with `streams`) and, when the file has any, `tags`, from a probe's `media`."""
    streams = [_audio_entry(stream) for stream in media["streams"]]
    tags: dict[str, Any] = {"audio": {**streams[0], "streams": streams}}
    family_tags = _family_tags(media["container"], media.get("metadata") or {})
    if family_tags:
        tags["tags"] = family_tags
    return tags


def _audio_entry(stream: dict[str, Any]) -> dict[str, Any]:
    """getID3's `audio` keys for one stream (without `streams`)."""
    channels, sample_rate, bitrate = stream["channels"], stream["sample_rate"], stream["bitrate"]
    bits = stream.get("bits_per_sample")
    channelmode = "mono" if channels == 1 else "stereo"
    bitrate_mode = "cbr" if stream["codec"].startswith("pcm_") else "vbr"
    encoder_options = ""
    frames = stream.get("mp3_frames")
    if frames:  # getID3 reads MP3 frame headers: joint stereo, and CBR only when every frame agrees
        if channels == 2 and frames["mode"] == "joint stereo":
            channelmode = "joint stereo"
        first_kbps = frames["kbps"][0]
        constant = len(frames["kbps"]) == 1 and first_kbps * 1000 == bitrate
        bitrate_mode = "cbr" if constant else "vbr"
        encoder_options = f"CBR{first_kbps}" if constant else "VBR"
    entry: dict[str, Any] = {
        "dataformat": stream["file_type"],
        "channels": channels,
        "sample_rate": sample_rate,
        "bitrate": bitrate,
        "channelmode": channelmode,
        "bitrate_mode": bitrate_mode,
        "lossless": stream["lossless"],
        "encoder_options": encoder_options,
        "compression_ratio": float(bitrate / max(1, sample_rate * channels * (bits or 16))),
    }
    if bits is not None:
        entry["bits_per_sample"] = bits
    if stream.get("encoder") is not None:
        entry["encoder"] = stream["encoder"]
    return entry


def _family_tags(container: str, metadata: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """{family: {getID3 key: [text]}}; empty when the file has no tags (never an empty family)."""
    if not metadata:
        return {}
    family = _TAG_FAMILIES.get(container, container.split(",")[0])
    names = _TAG_KEY_NAMES.get(family, {})
    return {family: {names.get(key, key): [value] for key, value in metadata.items()}}
