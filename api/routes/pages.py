"""``GET /`` and ``GET /runs/{id}``: the web pages of runs, plain HTML, JS and CSS.

The pages carry no data and need no token; their scripts fetch the JSON API with the token
the user gives them (kept in the browser's localStorage), like any other client. The assets
ship inside the package (``api/web``), so there is nothing to build.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

WEB = files("api") / "web"

router = APIRouter(include_in_schema=False)


def assets() -> StaticFiles:
    """The pages' scripts and style sheet, served under ``/static``."""
    return StaticFiles(packages=[("api", "web")])


@router.get("/", response_class=HTMLResponse)
def runs_page() -> HTMLResponse:
    """Runs, with filters, final losses and a small loss curve each."""
    return HTMLResponse(WEB.joinpath("runs.html").read_text())


@router.get("/runs/{job_id}", response_class=HTMLResponse)
def run_page(job_id: str) -> HTMLResponse:
    """One run: its curves, updated live, its progress, ranks and spec (the script reads the
    id from the address)."""
    return HTMLResponse(WEB.joinpath("run.html").read_text())
