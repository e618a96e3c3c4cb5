"""``shardtrain serve`` and ``shardtrain demo``: the embedded default, run and shown."""

from __future__ import annotations

from typing import Any

import numpy as np
import typer
from rich.console import Console

from api.cli.local import LocalService, client_config_path
from api.cli.progress import follow, summary
from api.client import Client
from core.npz import to_npz
from db.logs import configure_logging
from db.settings import get_settings

console = Console()

DEMO_SPEC: dict[str, Any] = {
    "name": "digits-demo", "model": {"hidden": [64], "activation": "relu", "output": "softmax"},
    "loss": "cross_entropy", "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "epochs": 30, "batch_size": 32, "seed": 7, "validation_fraction": 0.25, "shards": 4,
    "tags": {"source": "demo"},
}


def serve() -> None:
    """Run the API, the queue and a worker in this process (SQLite file by default)."""
    configure_logging(get_settings())
    service = LocalService()
    service.prepare()
    console.print(f"shardtrain serving on [bold]{service.url}[/] (docs at {service.url}/docs)")
    console.print(f"token: {service.token}")
    console.print(f"saved with the URL in {client_config_path(service.settings)}")
    console.print(f"runs in a browser: {service.url}/?token={service.token}", soft_wrap=True)
    console.print("from a terminal: shardtrain runs, shardtrain submit SPEC --data FILE --wait")
    try:
        service.serve_forever()
    finally:
        service.stop()


def demo_data() -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's bundled digits when it is installed, else a synthetic look-alike."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        rng = np.random.default_rng(0)
        centres = rng.uniform(0, 1, size=(10, 64))
        y = rng.integers(0, 10, size=1797)
        X = np.clip(centres[y] + rng.normal(scale=0.25, size=(1797, 64)), 0, 1)
        return X, y, "synthetic digits (scikit-learn not installed)"
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y, "scikit-learn's digits"


def demo() -> None:
    """Start the service, train a 4-shard job on digits, show progress and the result."""
    configure_logging(get_settings(), "WARNING")  # the progress bar tells the story
    X, y, source = demo_data()
    with LocalService() as service, Client(service.url, service.token) as client:
        console.print(f"service up on {service.url}; uploading {source} ({len(y)} rows)")
        dataset = client.upload_dataset(to_npz({"X": X, "y": y}), name="digits.npz")
        job = client.submit({**DEMO_SPEC, "dataset": dataset["id"]})
        console.print(f"job {job['id']}: {DEMO_SPEC['shards']} shards, "
                      f"{job['progress']['total_steps']} steps")
        final = follow(client, job, console)
        if final["status"] != "succeeded":
            console.print(f"[red]{summary(final)}[/]")
            raise typer.Exit(1)
        accuracy = final["final"]["val_accuracy"]
        console.print(f"[green]succeeded[/]: validation accuracy {accuracy:.4f}")
        console.print("query the stored run (while `shardtrain serve` runs):")
        for command in ("runs", f"history {job['id']}", f"weights {job['id']} -o weights.npz"):
            console.print(f"  shardtrain {command}")
        console.print(f"  or in a browser: {service.url}/runs/{job['id']}?token={service.token}",
                      soft_wrap=True)
