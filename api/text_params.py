"""Path and query parameters that no database column can hold are refused as bad input.

PostgreSQL text cannot contain the NUL character, and a parameter holding one (``%00``) would
fail inside the query as a 500. Checked once for every route, before any route runs.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError


def refuse_nul_characters(request: Request) -> None:
    errors = [
        {"loc": (where, name), "msg": f"{name} contains a NUL character",
         "type": "nul_character"}
        for where, items in (("path", request.path_params.items()),
                             ("query", request.query_params.multi_items()))
        for name, value in items if "\x00" in str(value)
    ]
    if errors:
        raise RequestValidationError(errors)
