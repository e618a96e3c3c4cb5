"""The ``shardtrain`` command: one typer app, each group of commands in its own module."""

from __future__ import annotations

import typer

from api.cli import datasets, jobs, results, serve, token, train

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Train multi-layer perceptrons, locally or as jobs of a service.")
app.command("train")(train.train)
app.command("serve")(serve.serve)
app.command("demo")(serve.demo)
app.command("submit")(jobs.submit)
app.command("watch")(jobs.watch)
app.command("runs")(jobs.runs)
app.command("cancel")(jobs.cancel)
app.command("delete")(jobs.delete)
app.command("history")(results.history)
app.command("weights")(results.weights)
app.command("predict")(results.predict)
app.add_typer(datasets.app, name="datasets")
app.add_typer(token.app, name="token")


@app.callback()
def root() -> None:
    """Train multi-layer perceptrons, locally or as jobs of a service."""


def main() -> None:
    app()
