"""``shardtrain train``: a whole job spec trained in this process, with no service.

The reference the service must reproduce: the same spec and data give the same weights here
as through the API, whatever the number of workers there.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from api.cli.output import fail
from core.data import InvalidDataError
from core.spec import SpecError, TrainSpec
from core.training import DivergedError, Trainer

# Fields of a job spec that concern the service, not the numbers: accepted and ignored here.
SERVICE_FIELDS = ("name", "dataset", "tags", "max_workers", "init")


def load_spec(path: Path) -> tuple[TrainSpec, dict[str, Any]]:
    """The numeric spec and the whole JSON object it came from."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise fail(f"cannot read spec {path}: {exc}", 2) from exc
    if not isinstance(raw, dict):
        raise fail(f"spec {path} must hold a JSON object", 2)
    try:
        spec = TrainSpec.from_dict({k: v for k, v in raw.items() if k not in SERVICE_FIELDS})
        spec.optimizer.check_all_used()
        return spec, raw
    except SpecError as exc:
        raise fail(f"invalid spec {path}: {exc}", 2) from exc
    except TypeError as exc:
        raise fail(f"invalid spec {path}: {exc}", 2) from exc


def load_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    if path.is_file() and not zipfile.is_zipfile(path):
        # np.load would take it for a pickle and say so.
        raise fail(f"{path} is not an .npz file (a zip of .npy arrays "
                   f"{', '.join(names)}); the service's upload reads CSV and JSON too", 2)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read {path} as .npz: {exc}", 2) from exc
    missing = [name for name in names if name not in arrays]
    if missing:
        raise fail(f"{path} lacks the arrays {', '.join(missing)}", 2)
    return arrays


def train(
    spec_file: Annotated[Path, typer.Argument(help="Job spec (JSON), as POST /v1/jobs takes.")],
    data: Annotated[Path, typer.Option(help=".npz with arrays X (rows, features) and y.")],
    out: Annotated[Path, typer.Option(help="Where to write the trained weights (.npz).")],
    init: Annotated[Path | None, typer.Option(help="Start from these weights (.npz).")] = None,
) -> None:
    """Train a job spec in this process and print a JSON summary."""
    spec, raw = load_spec(spec_file)
    if init is None and isinstance(raw.get("init"), str):
        init = Path(raw["init"])
        if not init.exists():
            raise fail(f"spec's init {raw['init']!r} is not a weights file here "
                       "(a job id only means something to the service)", 2)
    arrays = load_npz(data, ("X", "y"))
    start = load_npz(init, ("W1", "b1")) if init is not None else None
    try:
        trainer = Trainer(spec, arrays["X"], arrays["y"], init=start)
        result = trainer.run()
    except (InvalidDataError, ValueError) as exc:
        raise fail(str(exc), 2) from exc
    except DivergedError as exc:
        raise fail(str(exc), 1) from exc
    model = trainer.model()
    out.write_bytes(model.to_npz())
    json.dump({**result.to_dict(), "out": str(out)}, sys.stdout)
    sys.stdout.write("\n")
