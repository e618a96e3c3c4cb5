"""The digest of a dataset's content, which dedupes uploads per tenant (version 2).

``sha256("shardtrain-dataset-v2;X:<dtype>:<rows>x<width>;" + sha256(X bytes) + ";y:<dtype>:
<shape>;" + sha256(y bytes))``, hex digests inside. X's bytes are its rows in upload order,
little-endian, in X's dtype (booleans as uint8); y's are int64 class labels, float64 targets,
or text labels in UTF-8 each followed by a 0 byte (dtype ``<U<longest label>``); y's shape is
``<rows>`` or ``<rows>x<targets>``. Both inner digests run as the rows stream past, so a
stream of unknown length is digested in one pass; the same data in any format digests alike.
Datasets stored before it keep their version-1 digest.
"""

from __future__ import annotations

import hashlib

from api.services.ingest.features import Features
from api.services.ingest.labels import Targets

VERSION = "shardtrain-dataset-v2"


def dataset_digest(features: Features, targets: Targets) -> str:
    """The hex digest of the data that ``features`` and ``targets`` took."""
    x = f"X:{features.dtype.str}:{features.rows}x{features.width};{features.hash.hexdigest()}"
    return hashlib.sha256(f"{VERSION};{x};{targets.digest}".encode()).hexdigest()
