"""The routes' dependencies as ``Annotated`` aliases; tests swap them with dependency_overrides.

The settings are the app's own (``create_app(settings)``), and the database session follows
them, so an app built for a given database and limits uses exactly those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache, partial
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.model_cache import ModelCache
from api.queue import broker_reachable, enqueue_job
from db.base import MAX_INTEGER
from db.engine import SessionFactory, make_engine, make_session_factory, session_scope
from db.models import Job, Tenant
from db.queries.jobs import get_job
from db.queries.tenants import tenant_for_token
from db.settings import Settings

Enqueue = Callable[[str], None]
"""Sends a committed job to the workers, by id."""
BrokerCheck = Callable[[float], bool]
"""Whether the broker answers within the given seconds."""


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


@lru_cache
def session_factory(database_url: str) -> SessionFactory:
    """One engine (and connection pool) per database URL for the life of the process."""
    return make_session_factory(make_engine(database_url))


def get_sessions(settings: SettingsDep) -> SessionFactory:
    """The factory of the app's database, for work that outlives a request's session."""
    return session_factory(settings.database_url)


SessionsDep = Annotated[SessionFactory, Depends(get_sessions)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    """One transaction per request: committed if the route returns, else rolled back. Routes
    that hand work to the workers commit before enqueueing."""
    with session_scope(session_factory(settings.database_url)) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
# Closed when the route function returns, before the response is sent: a streamed response
# (Server-Sent Events) must not hold a pooled connection for as long as a client listens.
RouteSessionDep = Annotated[Session, Depends(get_session, scope="function")]

bearer = HTTPBearer(auto_error=False, description="A token from `shardtrain token create`.")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message,
                         headers={"WWW-Authenticate": "Bearer"})


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _authenticate(session: Session, credentials: HTTPAuthorizationCredentials | None) -> Tenant:
    # HTTPBearer yields None for a missing header and for any scheme other than Bearer.
    if credentials is None:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    tenant = tenant_for_token(session, token=credentials.credentials)
    if tenant is None:
        raise _unauthorized("unknown or revoked token")
    return tenant


def get_current_tenant(session: SessionDep, credentials: Credentials) -> Tenant:
    return _authenticate(session, credentials)


CurrentTenant = Annotated[Tenant, Depends(get_current_tenant)]


def get_enqueue(settings: SettingsDep) -> Enqueue:
    return partial(enqueue_job, settings=settings)


EnqueueDep = Annotated[Enqueue, Depends(get_enqueue)]


def get_broker_check(settings: SettingsDep) -> BrokerCheck:
    return partial(broker_reachable, settings=settings)


BrokerCheckDep = Annotated[BrokerCheck, Depends(get_broker_check)]


def get_model_cache(request: Request) -> ModelCache:
    cache: ModelCache = request.app.state.models
    return cache


ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]


def _tenant_job(session: Session, tenant: Tenant, job_id: str) -> Job:
    # Another tenant's job is as absent as one that never existed.
    job = get_job(session, tenant_id=tenant.id, job_id=job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job_id}")
    return job


def get_tenant_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> Job:
    """The job of the path, if it is the tenant's."""
    return _tenant_job(session, tenant, job_id)


TenantJob = Annotated[Job, Depends(get_tenant_job)]


def get_streamed_job(job_id: str, session: RouteSessionDep, credentials: Credentials) -> Job:
    """``get_tenant_job`` for streaming routes: the job is read, detached, and the session
    closed before the stream starts (the route polls with sessions of its own)."""
    return _tenant_job(session, _authenticate(session, credentials), job_id)


StreamedJob = Annotated[Job, Depends(get_streamed_job)]


SinceStep = Annotated[int | None, Query(ge=0, le=MAX_INTEGER,
                                        description="Only the steps after it")]
