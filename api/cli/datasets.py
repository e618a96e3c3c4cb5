"""``shardtrain datasets upload`` and ``delete``: training data on a service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from api.cli.output import fail
from api.cli.remote import TokenOption, UrlOption, connect
from api.cli.transfer import UploadDisplay

app = typer.Typer(no_args_is_help=True, help="Datasets of a service.")


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(
        help=".npz (arrays X, y), .csv (header row), .parquet or .json. A file larger than "
        "the service takes in one request goes in parts; run the same command again after a "
        "failure and it resumes.")],
    target: Annotated[str | None, typer.Option(
        help="CSV and Parquet only: the column of labels or targets.")] = None,
    name: Annotated[str | None, typer.Option(help="Default: the file's name.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Upload FILE and print the dataset's id (the same data again returns the stored one)."""
    if not file.is_file():
        raise fail(f"no file {file}", 2)
    with connect(url, token) as client, \
            UploadDisplay(Console(stderr=True), file.name) as display:
        try:
            dataset = client.upload_dataset(file, name=name, target=target,
                                            on_progress=display)
        except httpx.TransportError as error:
            if not display.shown:
                raise
            raise fail(f"{error or type(error).__name__}: the upload stopped; run the same "
                       "command again to resume it") from None
    typer.echo(f"{dataset['n_rows']} rows, {dataset['n_features']} features, {dataset['task']}"
               + (f", classes {dataset['classes']}" if dataset["classes"] else ""), err=True)
    typer.echo(dataset["id"])


@app.command()
def delete(
    dataset_id: Annotated[str, typer.Argument(help="The dataset to delete.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete a dataset and its stored rows (refused while a queued or running job uses it;
    ended jobs keep their history)."""
    with connect(url, token) as client:
        client.delete_dataset(dataset_id)
    typer.echo(f"deleted {dataset_id}", err=True)
