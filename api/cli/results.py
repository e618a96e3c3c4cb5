"""``shardtrain history``, ``weights`` and ``predict``: what a job produced."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any, TextIO

import numpy as np
import plotext as plt
import typer

from api.cli.output import fail
from api.cli.remote import TokenOption, UrlOption, connect

HISTORY_COLUMNS = ("step", "epoch", "train_loss", "val_loss", "val_accuracy")


def _write_csv(history: dict[str, np.ndarray], stream: TextIO) -> None:
    writer = csv.writer(stream)
    writer.writerow(HISTORY_COLUMNS)
    for row in zip(*(history[name] for name in HISTORY_COLUMNS), strict=True):
        step, epoch, *values = row
        # Validation values exist at epoch ends only: elsewhere the cell stays empty.
        writer.writerow([int(step), int(epoch), *("" if np.isnan(v) else repr(float(v))
                                                  for v in values)])


def _plot(history: dict[str, np.ndarray], title: str) -> str:
    """Train loss per step and validation loss per epoch, as terminal text."""
    width, height = shutil.get_terminal_size((100, 30))
    plt.clear_figure()
    plt.plotsize(min(width, 120), max(12, min(height - 2, 30)))
    train = ~np.isnan(history["train_loss"])
    plt.plot(history["step"][train].tolist(), history["train_loss"][train].tolist(),
             label="train")
    val = ~np.isnan(history["val_loss"])
    if val.any():
        plt.scatter(history["step"][val].tolist(), history["val_loss"][val].tolist(),
                    label="validation", marker="dot")
    plt.title(title)
    plt.xlabel("step")
    plt.ylabel("loss")
    text: str = plt.build()
    return text if sys.stdout.isatty() else plt.uncolorize(text)


def history(
    job_id: Annotated[str, typer.Argument(help="The job.")],
    csv_file: Annotated[str | None, typer.Option(
        "--csv", help="Write the history as CSV to this file ('-': stdout) instead of plotting.")]
    = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Plot a job's train and validation loss in the terminal, or export them as CSV."""
    with connect(url, token) as client:
        columns = client.history(job_id)
        job = client.job(job_id) if csv_file is None else None
    if csv_file == "-":
        _write_csv(columns, sys.stdout)
    elif csv_file is not None:
        with open(csv_file, "w", newline="") as stream:
            _write_csv(columns, stream)
        typer.echo(f"wrote {len(columns['step'])} steps to {csv_file}", err=True)
    elif not len(columns["step"]):
        typer.echo("no steps recorded yet", err=True)
    else:
        assert job is not None
        typer.echo(_plot(columns, f"{job['name']} ({job['status']})"))


def weights(
    job_id: Annotated[str, typer.Argument(help="The job.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the .npz.")],
    checkpoint: Annotated[str, typer.Option(
        help="final, best, latest, or a step (0: the initial weights).")] = "final",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Download a job's weights: an .npz of W1, b1, W2, b2, ... and its spec."""
    with connect(url, token) as client:
        data = client.weights_npz(job_id, checkpoint)
    try:
        out.write_bytes(data)
    except OSError as error:
        raise fail(f"cannot write {out}: {error.strerror or error}") from error
    typer.echo(f"wrote {checkpoint} weights of {job_id} to {out} ({len(data)} bytes)")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv_rows(text: str, target: str | None) -> np.ndarray:
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    header = [cell.strip() for cell in rows[0]] if rows else []
    has_header = not all(_is_number(cell) for cell in header)
    if target is not None:
        if not has_header or target not in header:
            raise fail(f"--target {target!r} is not a column of the CSV's header", 2)
        drop = header.index(target)
        rows = [row[:drop] + row[drop + 1:] for row in rows]
    return np.array(rows[1:] if has_header else rows, dtype=np.float64)


def read_rows(path: Path, target: str | None = None) -> np.ndarray:
    """Feature rows of a .csv (header row optional; ``target`` names a column to leave out),
    an .npz (array X) or a .json (``{"X": rows}`` or the rows alone)."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return np.asarray(npz["X"], dtype=np.float64)
        text = path.read_text()
        if path.suffix.lower() == ".json":
            document = json.loads(text)
            rows = document["X"] if isinstance(document, dict) else document
            return np.asarray(rows, dtype=np.float64)
        return _csv_rows(text, target)
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise fail(f"cannot read rows from {path}: {error}", 2) from error


def predict(
    job_id: Annotated[str, typer.Argument(help="The job whose final weights predict.")],
    data: Annotated[Path, typer.Argument(help="Rows to predict: .csv, .npz (X) or .json.")],
    target: Annotated[str | None, typer.Option(
        help="A CSV column to leave out, e.g. the label column of training data.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the whole response (outputs and labels).")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Predict rows with a job's final model: one line per row, its label (classifiers) or
    its outputs, comma-separated (regression)."""
    rows = read_rows(data, target)
    with connect(url, token) as client:
        prediction: dict[str, Any] = client.predict(job_id, rows)
    if as_json:
        typer.echo(json.dumps(prediction))
        return
    lines = (prediction["labels"] if prediction["labels"] is not None
             else [",".join(repr(v) for v in row) for row in prediction["outputs"]])
    typer.echo("\n".join(str(line) for line in lines))
