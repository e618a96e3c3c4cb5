"""Tenants and bearer tokens."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ApiToken, Tenant
from db.queries.tenants import (
    TOKEN_PREFIX,
    create_tenant,
    issue_token,
    revoke_token,
    tenant_for_token,
)


def test_create_tenant_returns_the_existing_tenant_of_that_name(session: Session) -> None:
    first = create_tenant(session, name="acme")
    again = create_tenant(session, name="acme")
    other = create_tenant(session, name="globex")
    assert again.id == first.id
    assert other.id != first.id


def test_a_token_authenticates_its_tenant_and_is_stored_only_as_a_digest(
    session: Session, tenant: Tenant
) -> None:
    token = issue_token(session, tenant=tenant)
    assert len(token) >= 43  # 32 random bytes
    found = tenant_for_token(session, token=token)
    assert found is not None and found.id == tenant.id
    stored = session.execute(select(ApiToken.token_hash)).scalars().all()
    assert stored != [token] and len(stored[0]) == 64
    assert token not in stored[0]


def test_no_token_reads_as_a_command_line_option(
    session: Session, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As one random token in 64 would begin without the prefix.
    monkeypatch.setattr(secrets, "token_urlsafe", lambda nbytes: "-" + "A" * 42)
    token = issue_token(session, tenant=tenant)
    assert token.startswith(TOKEN_PREFIX) and not token.startswith("-")
    found = tenant_for_token(session, token=token)
    assert found is not None and found.id == tenant.id


def test_unknown_token_authenticates_nobody(session: Session, tenant: Tenant) -> None:
    issue_token(session, tenant=tenant)
    assert tenant_for_token(session, token="not-a-token") is None


def test_revoked_token_no_longer_authenticates(session: Session, tenant: Tenant) -> None:
    revoked = issue_token(session, tenant=tenant)
    kept = issue_token(session, tenant=tenant)
    assert revoke_token(session, token=revoked) is True
    assert tenant_for_token(session, token=revoked) is None
    assert tenant_for_token(session, token=kept) is not None
    assert revoke_token(session, token=revoked) is False
    assert revoke_token(session, token="never-issued") is False
