"""Named arrays to and from .npz bytes, in memory, never pickled."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np


def to_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    return buf.getvalue()


def from_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
