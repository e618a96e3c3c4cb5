"""What a worker reads before training: the numeric spec, the dataset and any initial weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core.data import InvalidDataError
from core.npz import from_npz
from core.spec import TrainSpec
from db.models import Dataset, Job
from db.queries.checkpoints import get_weights
from db.queries.jobs import get_job


@dataclass(frozen=True)
class TrainingInput:
    spec: TrainSpec
    submitted: dict[str, Any]  # the whole job spec, stored with the weights
    X: np.ndarray
    y: np.ndarray
    init: dict[str, np.ndarray] | None


def numeric_spec(spec: dict[str, Any]) -> TrainSpec:
    """The core's part of a stored job spec (the service fields are the API's business)."""
    return TrainSpec.from_dict({k: v for k, v in spec.items()
                                if k in TrainSpec.__dataclass_fields__})


def load_input(session: Session, job: Job) -> TrainingInput:
    """Raises InvalidDataError (or SpecError) when the job cannot train as stored."""
    dataset = session.get(Dataset, job.dataset_id)
    if dataset is None:
        raise InvalidDataError(f"dataset {job.dataset_id} no longer exists")
    arrays = from_npz(dataset.content)
    init = None
    init_id = job.spec.get("init")
    if init_id:
        source = get_job(session, tenant_id=job.tenant_id, job_id=init_id)
        weights = get_weights(session, job_id=init_id, kind="final") if source else None
        if weights is None:
            raise InvalidDataError(f"init job {init_id} has no final weights")
        init = from_npz(weights.data)
    return TrainingInput(spec=numeric_spec(job.spec), submitted=dict(job.spec),
                         X=arrays["X"], y=arrays["y"], init=init)
