"""A job followed in the terminal: a rich progress bar fed by its events, then one summary line."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from api.client import FINISHED, Client


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


class _Bar:
    """The bar's fields from each event: epoch, step, losses, samples/s (ETA is rich's, from
    the rate at which steps complete)."""

    def __init__(self, progress: Progress, job: dict[str, Any]) -> None:
        self.progress = progress
        state = job["progress"]
        self.task: TaskID = progress.add_task(
            job["status"], total=state["total_steps"], completed=state["step"],
            epoch=f"{state['epoch']}/{state['epochs']}", loss="", speed="")
        self.val = ""

    def status(self, job: dict[str, Any]) -> None:
        self.progress.update(self.task, description=job["status"])

    def step(self, event: dict[str, Any]) -> None:
        if event["val_loss"] is not None:
            accuracy = event["val_accuracy"]
            self.val = f" val {_fmt(event['val_loss'])}" + (
                f" acc {_fmt(accuracy)}" if accuracy is not None else "")
        speed = event["samples_per_s"]
        self.progress.update(
            self.task, completed=event["step"], description=event["status"],
            epoch=f"{event['epoch']}/{event['epochs']}",
            loss=f"loss {_fmt(event['train_loss'])}{self.val}",
            speed=f"{speed:,.0f} samples/s" if speed else "")


def follow(client: Client, job: dict[str, Any], console: Console) -> dict[str, Any]:
    """Show ``job``'s progress from its current step until it ends; returns it as it ended."""
    if job["status"] in FINISHED:
        return job
    columns = (TextColumn("{task.description:>9}"), BarColumn(bar_width=20),
               TextColumn("epoch {task.fields[epoch]}"),
               TextColumn("step {task.completed}/{task.total}"),
               TextColumn("{task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        bar = _Bar(progress, job)
        # From the last step already written: a long run is not replayed, only followed.
        for event in client.events(job["id"], since_step=job["progress"]["step"]):
            if event.kind == "progress":
                bar.step(event.data)
            elif event.kind == "status":
                bar.status(event.data)
                job = event.data
    return job


def summary(job: dict[str, Any]) -> str:
    """One line on how the job ended (or stands)."""
    status = job["status"]
    if status == "succeeded":
        final = job["final"]
        accuracy = final["val_accuracy"]
        seconds = job["timings"]["running_s"]
        return (f"succeeded: train loss {_fmt(final['train_loss'])}, val loss "
                f"{_fmt(final['val_loss'])}"
                + (f", val accuracy {_fmt(accuracy)}" if accuracy is not None else "")
                + (f" in {seconds:.1f} s" if seconds is not None else ""))
    if job["error"]:
        return f"{status} ({job['error']['type']}): {job['error']['message']}"
    return f"{status} at step {job['progress']['step']} of {job['progress']['total_steps']}"
