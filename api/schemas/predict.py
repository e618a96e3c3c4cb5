"""Prediction with a job's final weights."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    X: list[list[float]] = Field(min_length=1, description="Rows of features, as trained on.")


class PredictResponse(BaseModel):
    outputs: list[list[float]] = Field(description="The output layer's activations per row.")
    labels: list[int] | list[str] | None = Field(
        description="The predicted class per row; null for regression."
    )
