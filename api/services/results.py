"""What a job produced, as clients fetch it: weights files and predictions."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from api.model_cache import ModelCache
from api.services.errors import Conflict, InvalidInput, NotFound
from core.checkpoint import model_from_state
from core.model import Model, Prediction
from db.blobs import BlobStore
from db.models import Job, WeightsKind
from db.queries.checkpoints import read_weights, state_at


def weights_npz(*, session: Session, store: BlobStore, job: Job,
                checkpoint: str) -> tuple[bytes, str]:
    """The weights .npz at ``checkpoint`` (final, best, latest or a step; 0 is the initial
    weights) and a name for it, e.g. ``final`` or ``step120``."""
    if checkpoint in ("final", "best"):
        # Without validation rows a job has no best epoch: its best weights are its final ones.
        kind: WeightsKind = ("best" if checkpoint == "best" and job.best_step is not None
                             else "final")
        weights = read_weights(session, store, job_id=job.id, kind=kind)
        if weights is None:
            raise NotFound(f"job {job.id} has no {checkpoint} weights (it is {job.status})")
        return weights[1], checkpoint
    step = None if checkpoint == "latest" else int(checkpoint)
    stored = state_at(session, store, job=job, step=step)
    if stored is None and step is None:
        raise NotFound(f"job {job.id} has no checkpoint yet (it is {job.status})")
    if stored is None:
        raise NotFound(f"job {job.id} has no checkpoint at step {step}; step 0 and "
                       "the latest checkpoints are kept")
    if stored.is_weights:
        return stored.data, f"step{stored.step}"
    # A checkpoint holds the whole training state; clients get the same layout as final.
    return model_from_state(stored.data).to_npz(), f"step{stored.step}"


def final_model(*, session: Session, store: BlobStore, job: Job, cache: ModelCache) -> Model:
    """The model of the job's final weights, from ``cache`` once the job has finished."""
    model = cache.get(job.id) if job.is_finished else None
    if model is not None:
        return model
    weights = read_weights(session, store, job_id=job.id, kind="final")
    if weights is None:
        raise Conflict(f"job {job.id} has no final weights to predict with (it is {job.status})")
    model = Model.from_npz(weights[1])
    if job.is_finished:  # only then can the final weights no longer change
        cache.put(job.id, model)
    return model


def predict(*, session: Session, store: BlobStore, job: Job, X: list[list[float]],
            cache: ModelCache) -> Prediction:
    """Outputs (and labels, for a classifier) of the job's final model for the rows ``X``.

    Raises ``Conflict`` without final weights and ``InvalidDataError`` for rows of the wrong
    width (``core.model.Model.predict`` checks them).
    """
    model = final_model(session=session, store=store, job=job, cache=cache)
    try:
        rows = np.array(X, dtype=np.float64)
    except ValueError as error:
        raise InvalidInput(("body", "X"), "rows of X must all have the same length") from error
    prediction = model.predict(rows)
    if not np.all(np.isfinite(prediction.outputs)):
        raise InvalidInput(("body", "X"), "the outputs overflow for these rows: are the "
                           "features on the scale the model was trained on?")
    return prediction
