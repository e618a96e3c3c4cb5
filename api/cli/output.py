"""What every command prints on failure: one line on stderr, and a non-zero exit code."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned ``typer.Exit``."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
