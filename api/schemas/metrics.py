"""A job's loss history, columnar."""

from __future__ import annotations

from pydantic import BaseModel


class MetricsPublic(BaseModel):
    """Parallel lists, one entry per recorded step in step order; the validation values are
    null except at epoch ends."""

    step: list[int]
    epoch: list[int]
    train_loss: list[float | None]
    val_loss: list[float | None]
    val_accuracy: list[float | None]
