"""The ``shardtrain`` command: one typer app, each group of commands in its own module."""

from __future__ import annotations

import typer

from api.cli import serve, token, train

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Train multi-layer perceptrons, locally or as jobs of a service.")
app.command("train")(train.train)
app.command("serve")(serve.serve)
app.command("demo")(serve.demo)
app.add_typer(token.app, name="token")


@app.callback()
def root() -> None:
    """Train multi-layer perceptrons, locally or as jobs of a service."""


def main() -> None:
    app()
