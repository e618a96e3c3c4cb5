"""How a client of the API reads a refusal: ``ApiError``, one readable line."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """The API refused a request; ``str()`` is one readable line."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {_describe(detail)}")
        self.status = status
        self.detail = detail


def _describe(detail: Any) -> str:
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}"
                         for e in detail if isinstance(e, dict))
    return str(detail)


def checked(response: httpx.Response) -> httpx.Response:
    """``response``, unless it is an error: then ``ApiError`` with the API's detail."""
    if response.is_error:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ApiError(response.status_code, detail)
    return response
