"""The tenant's storage quota (``TENANT_QUOTA_BYTES``): what it holds in the blob store, and
whether more fits."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.services.errors import TooLarge
from db.queries.storage import stored_bytes
from db.settings import Settings


def check_quota(session: Session, tenant_id: str, adding: int, settings: Settings) -> None:
    """Raises TooLarge (413) if the tenant's stored bytes plus ``adding`` pass the quota; the
    message names ``tenant_quota_bytes`` and the current use. Nothing without a quota."""
    quota = settings.tenant_quota_bytes
    if quota is None:
        return
    used = stored_bytes(session, tenant_id=tenant_id)
    if used + adding > quota:
        raise TooLarge(f"storage quota exceeded: tenant_quota_bytes={quota}, and you hold "
                       f"{used} bytes already (datasets, uploads, checkpoints and weights); "
                       f"this adds {adding}. Delete datasets or jobs you no longer need")
