"""The tus requests of ``/v1/uploads`` as the OpenAPI document describes them.

Their headers are read by hand (tus answers a missing or wrong one with its own statuses, not
a validation error), so each is described here, with the form a valid one takes.
"""

from __future__ import annotations

from typing import Any

from api.responses import Responses

_BASE64 = "(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
_PAIR = f"[A-Za-z0-9._-]+(?: {_BASE64})?"


def _header(name: str, description: str, required: bool = True,
            **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": {"type": "string", **schema}}


TUS_RESUMABLE = _header("Tus-Resumable", "The protocol's version.", enum=["1.0.0"])
UPLOAD_LENGTH = _header("Upload-Length", "The file's size in bytes.",
                        pattern="^[1-9][0-9]{0,17}$")
UPLOAD_METADATA = _header(
    "Upload-Metadata", "Comma-separated `key base64(value)` pairs: filename, name, target, "
    "format (npz, csv, json; else told by the filename).", required=False,
    maxLength=4096, pattern=f"^{_PAIR}(?:,{_PAIR})*$")
UPLOAD_OFFSET = _header("Upload-Offset", "Where the body goes: the stored offset.",
                        pattern="^[0-9]{1,18}$")


def documented(*parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``openapi_extra`` of a tus route: ``Tus-Resumable`` and ``parameters``."""
    return {"parameters": [TUS_RESUMABLE, *parameters], **extra}


REFUSALS: Responses = {
    400: {"description": "A header missing or malformed"},
    404: {"description": "You have no such upload"},
    412: {"description": "Tus-Resumable is not 1.0.0 (the answer's Tus-Version is)"},
}
