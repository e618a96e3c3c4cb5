"""Uploads into stored datasets, streamed: readers per format (``csv_arrow``, ``csv_text``,
``parquet``, ``npz``, ``json_body``), X and y checked and digested batch by batch
(``features``, ``labels``, ``digest``), the ingest shuffle through temporary buckets
(``spool``), and the whole (``pipeline``)."""

from api.services.dataset_files import UploadFormat
from api.services.ingest.pipeline import Known, Record, ingest, ingest_arrays

__all__ = ["Known", "Record", "UploadFormat", "ingest", "ingest_arrays"]
