"""Uploads of arrays in each format, made as their users would make them."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.services.ingest import UploadFormat


def as_csv(X: np.ndarray, y: np.ndarray, target: str = "label") -> bytes:
    """A header row, the target last; floats written to round-trip (%.17g)."""
    out = io.StringIO()
    out.write(",".join([f"f{i}" for i in range(X.shape[1])] + [target]) + "\n")
    cells = np.char.mod("%.17g", X) if X.dtype.kind == "f" else X.astype(str)
    labels = np.asarray(y).astype(str)[:, None]
    np.savetxt(out, np.concatenate([cells, labels], axis=1), fmt="%s", delimiter=",")
    return out.getvalue().encode()


def as_parquet(X: np.ndarray, y: np.ndarray, target: str = "label", **options: Any) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({**{f"f{i}": X[:, i] for i in range(X.shape[1])}, target: y}),
                   out, **options)
    return out.getvalue()


def as_npz(X: np.ndarray, y: np.ndarray, compressed: bool = False) -> bytes:
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, X=X, y=y)
    return out.getvalue()


def as_json(X: np.ndarray, y: np.ndarray) -> bytes:
    return json.dumps({"X": X.tolist(), "y": y.tolist()}).encode()


FORMATS = ["npz", "npz-compressed", "csv-arrow", "csv-text", "parquet", "json"]


def encoded(name: str, X: np.ndarray, y: np.ndarray, monkeypatch: pytest.MonkeyPatch
            ) -> tuple[bytes, UploadFormat, str | None]:
    """The upload of ``(X, y)`` in format ``name`` of ``FORMATS``: body, format, target."""
    if name.startswith("npz"):
        return as_npz(X, y, compressed=name == "npz-compressed"), "npz", None
    if name == "parquet":
        return as_parquet(X, y, row_group_size=7000), "parquet", "label"
    if name == "json":
        return as_json(X, y), "json", None
    body = as_csv(X, y)
    if name == "csv-text":
        without_pyarrow(monkeypatch)
    return body, "csv", "label"


def without_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the tabular extra were not installed: ``import pyarrow`` fails."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)
