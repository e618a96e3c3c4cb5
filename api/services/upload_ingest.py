"""Complete uploads become datasets in the API process, beside the requests, never in one.

``IngestExecutor`` runs ``ingest`` (``api.services.ingest``: the file streamed into a
dataset) on a small pool of threads. Each ingest it was handed, queued or running, holds the
upload's lease (``db.models.Upload``), which one heartbeat thread renews every few seconds.
The outcome is written under the lease: ``ready`` with the dataset, or ``failed`` with what
is wrong with the file; then the upload's blobs go. An ingest that breaks down for another
reason (the store unreachable, a bug) lets its lease go at once, and the next sweep
(``api.services.upload_sweep``), in this process or another, runs it again. So does one whose
process died: its heartbeat stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Protocol

from api.services.dataset_files import UploadFormat
from api.services.datasets import record_dataset
from api.services.errors import ServiceError
from core.data import InvalidDataError
from db.blobs import BlobNotFound, BlobStore, blob_store
from db.engine import SessionFactory, session_scope
from db.models import Dataset, Upload
from db.queries.datasets import DatasetFacts, dataset_with_content
from db.queries.uploads import (
    data_key,
    drop_ingest,
    end_ingest,
    renew_ingest,
    upload_prefix,
)
from db.settings import Settings

log = logging.getLogger(__name__)

INGEST_THREADS = 2
"""Ingests at once in one API process (each takes a core while it parses)."""
HEARTBEAT_S = 5.0
"""How often the leases of an executor's ingests are renewed (well within INGEST_STALL_S)."""


class Ingest(Protocol):
    """Streams a seekable file into a dataset: ``(dataset, created)``. ``known(sha256)`` is
    the tenant's dataset of that content, if any; ``record(dataset_id, facts)`` stores the
    row. Raises ``InvalidDataError`` or ``InvalidInput`` naming the row; leaves nothing
    behind on any error."""

    def __call__(self, source: BinaryIO, *, fmt: UploadFormat, target: str | None,
                 store: BlobStore, settings: Settings,
                 known: Callable[[str], Dataset | None],
                 record: Callable[[str, DatasetFacts], tuple[Dataset, bool]]
                 ) -> tuple[Dataset, bool]: ...


class IngestExecutor:
    """Ingests of complete uploads on ``threads`` threads, sessions from ``sessions``."""

    def __init__(self, *, ingest: Ingest, sessions: SessionFactory, settings: Settings,
                 threads: int = INGEST_THREADS, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.ingest, self.sessions, self.settings = ingest, sessions, settings
        self.heartbeat_s = heartbeat_s
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ingest")
        self._held: dict[str, int] = {}  # upload id -> the attempt this process holds
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._beating: threading.Thread | None = None

    def submit(self, upload_id: str, attempt: int) -> None:
        """Ingest the upload, whose lease at ``attempt`` the caller has just taken. Once
        shut down, the lease is left to lapse: a sweep, here or elsewhere, takes it."""
        if self._stopping.is_set():
            log.warning("upload %s: ingests are shutting down; left to the sweep", upload_id)
            return
        with self._lock:
            self._held[upload_id] = attempt
            if self._beating is None:
                self._beating = threading.Thread(target=self._beat, name="ingest-heartbeat",
                                                 daemon=True)
                self._beating.start()
        self._pool.submit(self._run, upload_id, attempt)

    def held(self) -> dict[str, int]:
        """The uploads this executor holds, queued or running, and their attempts."""
        with self._lock:
            return dict(self._held)

    def shutdown(self) -> None:
        """Stop taking work. A running ingest finishes if the process lives on; queued ones
        are dropped, and their leases, no longer renewed, fall to the next sweep."""
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _beat(self) -> None:
        while not self._stopping.wait(self.heartbeat_s):
            for upload_id, attempt in self.held().items():
                try:
                    with session_scope(self.sessions) as session:
                        alive = renew_ingest(session, upload_id=upload_id, attempt=attempt)
                except Exception:  # the database away: try again at the next beat
                    log.warning("could not renew the ingest of upload %s", upload_id,
                                exc_info=True)
                    continue
                if not alive:
                    log.warning("the ingest of upload %s (attempt %d) lost its lease",
                                upload_id, attempt)
                    self._release(upload_id, attempt)

    def _release(self, upload_id: str, attempt: int) -> None:
        with self._lock:
            if self._held.get(upload_id) == attempt:
                del self._held[upload_id]

    def _run(self, upload_id: str, attempt: int) -> None:
        try:
            self._ingest(upload_id, attempt)
        except Exception:
            log.exception("the ingest of upload %s (attempt %d) broke down", upload_id,
                          attempt)
        finally:
            self._release(upload_id, attempt)

    def _ingest(self, upload_id: str, attempt: int) -> None:
        with session_scope(self.sessions) as session:
            upload = session.get(Upload, upload_id)
            if upload is None or upload.status != "ingesting" or upload.attempt != attempt:
                return  # another process took it over, or it ended meanwhile
            tenant_id, meta = upload.tenant_id, dict(upload.meta)
        store = blob_store(self.settings)
        dataset_id: str | None = None
        error: str | None = None
        try:
            with contextlib.closing(store.open_seekable(data_key(upload_id))) as source:
                dataset, _ = self.ingest(
                    source, fmt=meta["format"], target=meta.get("target"), store=store,
                    settings=self.settings, known=self._known(tenant_id),
                    record=self._record(tenant_id, meta["name"]))
            dataset_id = dataset.id
        except (InvalidDataError, ServiceError) as refused:
            error = str(refused)
        except BlobNotFound:
            error = "the upload's bytes are missing from the blob store; upload it again"
        except Exception as broke:
            with session_scope(self.sessions) as session:
                drop_ingest(session, upload_id=upload_id, attempt=attempt,
                            error=f"the ingest broke down ({type(broke).__name__})")
            raise
        with session_scope(self.sessions) as session:
            ended = end_ingest(session, upload_id=upload_id, attempt=attempt,
                               dataset_id=dataset_id, error=error,
                               expiry_s=self.settings.upload_expiry_s)
        if ended:  # else the next attempt reads the blobs
            store.delete_prefix(upload_prefix(upload_id))

    def _known(self, tenant_id: str) -> Callable[[str], Dataset | None]:
        def known(sha256: str) -> Dataset | None:
            with session_scope(self.sessions) as session:
                return dataset_with_content(session, tenant_id=tenant_id, sha256=sha256)
        return known

    def _record(self, tenant_id: str, name: str
                ) -> Callable[[str, DatasetFacts], tuple[Dataset, bool]]:
        def record(dataset_id: str, facts: DatasetFacts) -> tuple[Dataset, bool]:
            with session_scope(self.sessions) as session:
                return record_dataset(session, tenant_id=tenant_id, name=name,
                                      dataset_id=dataset_id, facts=facts,
                                      settings=self.settings)
        return record
