"""The sweep that every API process runs every ``SWEEP_INTERVAL_S``: ingests whose process
went silent are taken over, and uploads past their expiry are deleted with their bytes.

Every change is a conditional UPDATE or DELETE (``db.models.Upload``), so that the sweeps of
several processes act once on each upload. A stalled ingest is run again, in this process,
until it has had ``MAX_INGEST_ATTEMPTS``; then it fails, naming the last breakdown.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

from anyio import to_thread

from api.services.upload_ingest import IngestExecutor
from db.base import utc_now
from db.blobs import blob_store
from db.engine import SessionFactory, session_scope
from db.queries.uploads import (
    end_ingest,
    expired_uploads,
    remove_upload,
    stalled_ingests,
    take_stalled_ingest,
    upload_prefix,
)
from db.settings import Settings

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 30.0
MAX_INGEST_ATTEMPTS = 3


@dataclass
class SweepReport:
    """What one sweep did: ingests it took over (run here), failed, and uploads deleted."""

    resumed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)


def sweep(*, sessions: SessionFactory, settings: Settings, executor: IngestExecutor,
          now: datetime | None = None) -> SweepReport:
    """One pass; blobs are deleted after the rows' deletion is committed."""
    now = now or utc_now()
    report = SweepReport()
    stalled_s = settings.ingest_stall_s
    with session_scope(sessions) as session:
        stalled = stalled_ingests(session, stalled_s=stalled_s, now=now)
    for upload_id, attempt, last_error in stalled:
        with session_scope(sessions) as session:
            if attempt >= MAX_INGEST_ATTEMPTS:
                error = (f"the upload could not be read into a dataset in "
                         f"{MAX_INGEST_ATTEMPTS} attempts; the last: "
                         f"{last_error or f'no sign of life for {stalled_s:g} s'}")
                if end_ingest(session, upload_id=upload_id, attempt=attempt, dataset_id=None,
                              error=error, expiry_s=settings.upload_expiry_s,
                              stalled_s=stalled_s):
                    report.failed.append(upload_id)
                continue
            taken = take_stalled_ingest(session, upload_id=upload_id, attempt=attempt,
                                        stalled_s=stalled_s, now=now)
        if taken is not None:  # committed: now it is this process's to run
            executor.submit(upload_id, taken)
            report.resumed.append(upload_id)
    with session_scope(sessions) as session:
        expired = expired_uploads(session, now=now)
    for upload_id, attempt in expired:
        with session_scope(sessions) as session:
            if remove_upload(session, upload_id=upload_id, attempt=attempt, expired_at=now):
                report.expired.append(upload_id)
    # Once the rows' changes are committed: nothing will read these bytes again.
    for upload_id in report.failed + report.expired:
        blob_store(settings).delete_prefix(upload_prefix(upload_id))
    return report


async def sweep_forever(*, sessions: SessionFactory, settings: Settings,
                        executor: IngestExecutor,
                        interval_s: float = SWEEP_INTERVAL_S) -> None:
    """``sweep`` at once (an ingest another process left may wait), then every
    ``interval_s``, until cancelled; a pass that fails is logged and the next one tries."""
    while True:
        try:
            report = await to_thread.run_sync(lambda: sweep(
                sessions=sessions, settings=settings, executor=executor))
            if report.resumed or report.failed or report.expired:
                log.info("upload sweep: resumed %s, failed %s, expired %s", report.resumed,
                         report.failed, report.expired)
        except Exception:
            log.warning("the upload sweep failed; retrying in %g s", interval_s,
                        exc_info=True)
        await asyncio.sleep(interval_s)
