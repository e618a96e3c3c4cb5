"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Check = Literal["ok", "unreachable"]


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    database: Check
    broker: Check
    detail: str | None = None
