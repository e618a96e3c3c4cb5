"""Tenants and their bearer tokens."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.base import utc_now
from db.models import ApiToken, Tenant
from db.queries.dml import affected_rows, insert_for

# Tokens go on command lines (``shardtrain token revoke TOKEN``), and one in 64 of
# ``token_urlsafe``'s begin with "-", which a parser takes for an option: with the prefix none
# does, and a token found in a log or a repository says what it is.
TOKEN_PREFIX = "st_"


def hash_token(token: str) -> str:
    # A single SHA-256 suffices: tokens carry 256 random bits, so unlike passwords they cannot
    # be guessed from a dictionary, and the lookup by digest stays one indexed equality.
    return hashlib.sha256(token.encode()).hexdigest()


def create_tenant(session: Session, *, name: str) -> Tenant:
    """The tenant called ``name``, created if it does not exist yet (also under races)."""
    statement = insert_for(session, Tenant).values(name=name)
    session.execute(statement.on_conflict_do_nothing(index_elements=[Tenant.name]))
    return session.execute(select(Tenant).where(Tenant.name == name)).scalar_one()


def issue_token(session: Session, *, tenant: Tenant) -> str:
    """A new bearer token for ``tenant``; only its digest is stored, so show it once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(tenant_id=tenant.id, token_hash=hash_token(token)))
    session.flush()
    return token


def tenant_for_token(session: Session, *, token: str) -> Tenant | None:
    """The tenant that ``token`` authenticates, or None if it is unknown or revoked."""
    statement = (
        select(Tenant)
        .join(ApiToken, ApiToken.tenant_id == Tenant.id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    )
    return session.execute(statement).scalar_one_or_none()


def revoke_token(session: Session, *, token: str) -> bool:
    """Revoke ``token``; False if it was unknown or already revoked."""
    statement = (
        update(ApiToken)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
        .values(revoked_at=utc_now())
    )
    return affected_rows(session, statement) == 1
