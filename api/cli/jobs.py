"""``shardtrain submit``, ``watch``, ``runs``, ``cancel`` and ``delete``: jobs on a service."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.cli.output import fail
from api.cli.progress import follow, summary
from api.cli.remote import TokenOption, UrlOption, connect
from api.cli.transfer import UploadDisplay

# Progress and notes go to stderr, results (ids, tables) to stdout, so `$(...)` captures them.
notes = Console(stderr=True)
# Piped into a file or another program, a table is not cut to a terminal's width.
PIPED_WIDTH = 240


def _exit_for(job: dict[str, Any]) -> None:
    """Print how the job ended; exit 1 unless it succeeded."""
    typer.echo(summary(job))
    if job["status"] != "succeeded":
        raise typer.Exit(1)


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise fail(f"cannot read spec {path}: {error}", 2) from error
    if not isinstance(spec, dict):
        raise fail(f"spec {path} must hold a JSON object", 2)
    return spec


def submit(
    spec_file: Annotated[Path, typer.Argument(help="Job spec (JSON), as POST /v1/jobs takes.")],
    data: Annotated[Path | None, typer.Option(
        help="Upload this .npz, .csv or .json as the dataset and train on it.")] = None,
    target: Annotated[str | None, typer.Option(
        help="With a CSV --data: the column of labels or targets.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Show the progress until the job ends; exit 1 unless it succeeds.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(
        help="Retrying with the same key and spec returns the first job.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Submit a training job and print its id (with --wait, follow it to the end)."""
    spec = _read_spec(spec_file)
    if target is not None and data is None:
        raise fail("--target names a column of the CSV given with --data", 2)
    with connect(url, token) as client:
        if data is not None:
            with UploadDisplay(notes, data.name) as display:
                dataset = client.upload_dataset(data, target=target, on_progress=display)
            notes.print(f"dataset {dataset['id']}: {dataset['n_rows']} rows, "
                        f"{dataset['n_features']} features, {dataset['task']}")
            spec["dataset"] = dataset["id"]
        elif "dataset" not in spec:
            raise fail('the spec names no dataset: add "dataset": "<id>" or pass --data FILE', 2)
        job = client.submit(spec, idempotency_key=idempotency_key)
        if not wait:
            typer.echo(job["id"])
            return
        notes.print(f"job {job['id']}: {job['progress']['total_steps']} steps")
        job = follow(client, job, notes)
    _exit_for(job)


def watch(
    job_id: Annotated[str, typer.Argument(help="The job to follow.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Follow a job's progress until it ends; exit 1 unless it succeeds."""
    with connect(url, token) as client:
        job = follow(client, client.job(job_id), notes)
    _exit_for(job)


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "" if value is None else format(value, spec)


def runs(
    status: Annotated[str | None, typer.Option(
        help="queued, running, succeeded, failed or cancelled.")] = None,
    name: Annotated[str | None, typer.Option(help="Exact job name.")] = None,
    tag: Annotated[list[str] | None, typer.Option(
        help="key:value; repeat it to require several tags.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset id.")] = None,
    created_after: Annotated[str | None, typer.Option(
        help="ISO 8601 time with offset, inclusive.")] = None,
    created_before: Annotated[str | None, typer.Option(
        help="ISO 8601 time with offset, exclusive.")] = None,
    order: Annotated[str, typer.Option(
        help="created, final_val_loss or final_val_accuracy; a leading - reverses.")] = "-created",
    limit: Annotated[int, typer.Option(help="Runs per page (at most 200).")] = 20,
    cursor: Annotated[str | None, typer.Option(help="The next page, as printed below a page.")]
    = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Past and current runs as a table: the filters and orders of GET /v1/jobs."""
    with connect(url, token) as client:
        page = client.runs(status=status, name=name, tag=tag, dataset=dataset,
                           created_after=created_after, created_before=created_before,
                           order=order, limit=limit, cursor=cursor)
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=32)
    table.add_column("name")
    table.add_column("status", min_width=9)
    table.add_column("epoch", no_wrap=True)
    for column in ("train", "val", "acc", "secs"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("tags")
    for job in page["items"]:
        final = job["final"] or job["latest"] or {}
        running_s = job["timings"]["running_s"]
        table.add_row(
            job["id"], job["name"], job["status"],
            f"{job['progress']['epoch']}/{job['progress']['epochs']}",
            _fmt(final.get("train_loss")), _fmt(final.get("val_loss")),
            _fmt(final.get("val_accuracy")), _fmt(running_s, ".1f"),
            " ".join(f"{k}:{v}" for k, v in job["tags"].items()))
    out = Console()
    if not out.is_terminal:
        out = Console(width=PIPED_WIDTH)
    out.print(table)
    if page["next_cursor"]:
        # The whole command, filters and order included (a cursor is valid with them only);
        # not the token, which is a secret.
        given = [("--status", status), ("--name", name), *(("--tag", t) for t in tag or []),
                 ("--dataset", dataset), ("--created-after", created_after),
                 ("--created-before", created_before), ("--order", order),
                 ("--limit", str(limit)), ("--url", url), ("--cursor", page["next_cursor"])]
        command = ["shardtrain", "runs", *(part for flag, value in given if value is not None
                                           for part in (flag, value))]
        notes.print(f"more: {shlex.join(command)}", soft_wrap=True, markup=False,
                    highlight=False)


def cancel(
    job_id: Annotated[str, typer.Argument(help="The job to cancel.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Cancel a job: a queued one at once, a running one at its next step."""
    with connect(url, token) as client:
        job = client.cancel(job_id)
    typer.echo(job["status"] if job["status"] == "cancelled"
               else f"{job['status']}: cancel requested, it stops at its next step")


def delete(
    job_id: Annotated[str, typer.Argument(help="The job to delete.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete an ended job with its history, checkpoints and weights (cancel it first)."""
    with connect(url, token) as client:
        client.delete_job(job_id)
    typer.echo(f"deleted {job_id}")
