"""What a resumable upload's metadata (tus Upload-Metadata) says: the dataset to make of it.

The header is ``key base64,key2 base64`` (a key alone has an empty value). The service reads
``filename``, ``name``, ``target`` and ``format``, keeps the other keys as they came (tus
clients send their own, such as ``filetype``), and answers them back to HEAD.
"""

from __future__ import annotations

import base64
import binascii
from typing import get_args

from api.services.dataset_files import UploadFormat, format_of_filename
from api.services.errors import InvalidInput

LIMITS = {"name": 200, "target": 200, "filename": 1000, "format": 20}
"""The keys the service reads, and the longest value of each."""
MAX_HEADER = 4096


class MalformedMetadata(ValueError):
    """The header is not ``key base64`` pairs of UTF-8 text (HTTP 400)."""


def _invalid(key: str, message: str) -> InvalidInput:
    return InvalidInput(("header", "Upload-Metadata", key), f"{key}: {message}")


def parse_metadata(header: str | None) -> dict[str, str]:
    """The header's keys and values; raises MalformedMetadata for a header that is not
    ``key base64`` pairs, InvalidInput (422) for values that are no text."""
    if header is not None and len(header) > MAX_HEADER:
        raise MalformedMetadata(f"Upload-Metadata is longer than {MAX_HEADER} characters")
    metadata: dict[str, str] = {}
    for pair in (header or "").split(","):
        if not pair.strip():
            continue
        key, _, value = pair.strip().partition(" ")
        try:
            raw = base64.b64decode(value, validate=True) if value else b""
        except binascii.Error:
            raise MalformedMetadata(f"Upload-Metadata: {key!r} is not base64") from None
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise _invalid(key, "not UTF-8 text") from None
        if key in metadata or "\x00" in text:
            raise _invalid(key, "repeated, or holds a NUL character")
        metadata[key] = text
    return metadata


def format_metadata(metadata: dict[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" if value else key
                    for key, value in metadata.items())


def dataset_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """``metadata`` with the dataset's ``format`` (else told by the filename's extension)
    and ``name`` (else the filename) settled; raises InvalidInput (422) for a value the
    service cannot use."""
    for key, limit in LIMITS.items():
        if key in metadata and not 1 <= len(metadata[key]) <= limit:
            raise _invalid(key, f"between 1 and {limit} characters")
    formats: tuple[str, ...] = get_args(UploadFormat)
    fmt = metadata.get("format")
    if fmt is None:
        if "filename" not in metadata:
            raise _invalid("format", f"send format ({', '.join(formats)}) or a filename")
        fmt = format_of_filename(metadata["filename"])
    elif fmt not in formats:
        raise _invalid("format", f"{fmt!r} is none of {', '.join(formats)}")
    name = metadata.get("name") or metadata.get("filename", f"upload.{fmt}")[:200]
    return {**metadata, "format": fmt, "name": name}
