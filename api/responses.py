"""Responses every route of a kind can give, documented once for the OpenAPI document, so that
a client (or Schemathesis) finds each status the API answers described."""

from __future__ import annotations

from typing import Any

Responses = dict[int | str, dict[str, Any]]

AUTHENTICATED: Responses = {
    401: {"description": "Missing, malformed, unknown or revoked bearer token"},
}
NO_SUCH_JOB: Responses = {404: {"description": "You have no such job"}}
UNPARSABLE_BODY: Responses = {
    400: {"description": "The body cannot be parsed: not UTF-8, or a malformed form"},
}
