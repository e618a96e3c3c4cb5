"""The routes' dependencies as ``Annotated`` aliases; tests swap them with dependency_overrides.

The settings are the app's own (``create_app(settings)``), and the database session follows
them, so an app built for a given database and limits uses exactly those.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import lru_cache, partial
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.admission import DatabaseGate
from api.model_cache import ModelCache
from api.queue import broker_reachable, enqueue_job
from api.services.upload_ingest import IngestExecutor
from db.base import MAX_INTEGER
from db.blobs import BlobStore, blob_store
from db.engine import SessionFactory, make_engine, make_session_factory
from db.models import Job, Tenant
from db.queries.jobs import get_job
from db.queries.tenants import tenant_for_token
from db.settings import Settings

Enqueue = Callable[[str], None]
"""Sends a committed job to the workers, by id."""
BrokerCheck = Callable[[float], bool]
"""Whether the broker answers within the given seconds."""
QuotaCheck = Callable[[Session, str, int, Settings], None]
"""``(session, tenant_id, adding, settings)``: raises when the tenant would hold more than
its quota with ``adding`` more bytes."""


# The dependencies that only read the app's state are async: FastAPI runs them on the event
# loop, where a sync one would cost a thread-pool hop.


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

# A checkout that still finds no connection (the gate makes it rare: another user of the
# pool) fails fast as a 503 instead of holding a thread for SQLAlchemy's 30 s.
POOL_TIMEOUT_S = 5.0


@lru_cache
def _session_factory(database_url: str, pool_size: int, max_overflow: int) -> SessionFactory:
    return make_session_factory(make_engine(database_url, pool_size=pool_size,
                                            max_overflow=max_overflow,
                                            pool_timeout_s=POOL_TIMEOUT_S))


def session_factory(settings: Settings) -> SessionFactory:
    """One engine (and connection pool) per database for the life of the process."""
    return _session_factory(settings.database_url, settings.db_pool_size,
                            settings.db_max_overflow)


# Background work of an API process (ingests, their heartbeat, the upload sweep) has a pool
# of its own: it must never take a connection that the requests' gate counts on.
BACKGROUND_CONNECTIONS = 2


@lru_cache
def _background_factory(database_url: str) -> SessionFactory:
    return make_session_factory(make_engine(database_url, pool_size=BACKGROUND_CONNECTIONS,
                                            max_overflow=BACKGROUND_CONNECTIONS))


def background_sessions(settings: Settings) -> SessionFactory:
    """Sessions for the API process's own threads, apart from the requests' pool."""
    return _background_factory(settings.database_url)


def database_gate(settings: Settings) -> DatabaseGate:
    """The admission gate of an app on ``settings``' database: a slot per pooled connection."""
    return DatabaseGate(session_factory(settings), settings.db_pool_size +
                        settings.db_max_overflow, settings.db_queue_s)


async def get_gate(request: Request) -> DatabaseGate:
    gate: DatabaseGate = request.app.state.db_gate
    return gate


GateDep = Annotated[DatabaseGate, Depends(get_gate)]


async def get_session(gate: GateDep) -> AsyncIterator[Session]:
    """One transaction per request, in a slot of the gate (``api.admission``): committed if
    the route returns, else rolled back. Routes that hand work to the workers commit before
    enqueueing."""
    async with gate.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

bearer = HTTPBearer(auto_error=False, description="A token from `shardtrain token create`.")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message,
                         headers={"WWW-Authenticate": "Bearer"})


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _authenticate(session: Session, credentials: HTTPAuthorizationCredentials | None
                  ) -> Tenant:
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


async def get_tenant_briefly(gate: GateDep, credentials: Credentials) -> Tenant:
    """The tenant, authenticated in a session closed at once: for routes that read a long
    body before they need the database, which must not hold a connection meanwhile."""
    return await gate.run(partial(_authenticate, credentials=credentials))


TenantBriefly = Annotated[Tenant, Depends(get_tenant_briefly)]


async def get_enqueue(settings: SettingsDep) -> Enqueue:
    return partial(enqueue_job, settings=settings)


EnqueueDep = Annotated[Enqueue, Depends(get_enqueue)]


async def get_broker_check(settings: SettingsDep) -> BrokerCheck:
    return partial(broker_reachable, settings=settings)


BrokerCheckDep = Annotated[BrokerCheck, Depends(get_broker_check)]


async def get_store(settings: SettingsDep) -> BlobStore:
    """The blob store of the app's settings (made on the first request that needs it)."""
    return blob_store(settings)


StoreDep = Annotated[BlobStore, Depends(get_store)]


async def get_ingests(request: Request) -> IngestExecutor:
    ingests: IngestExecutor = request.app.state.ingests
    return ingests


IngestsDep = Annotated[IngestExecutor, Depends(get_ingests)]


async def get_quota_check(request: Request) -> QuotaCheck | None:
    check: QuotaCheck | None = request.app.state.quota_check
    return check


QuotaCheckDep = Annotated[QuotaCheck | None, Depends(get_quota_check)]


async def get_model_cache(request: Request) -> ModelCache:
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


async def get_detached_job(job_id: str, gate: GateDep, credentials: Credentials) -> Job:
    """``get_tenant_job`` in a session closed at once, for routes that then read in slots of
    their own (a stream, a history page by page): a request never waits for a second slot
    while it holds one."""
    def read(session: Session) -> Job:
        return _tenant_job(session, _authenticate(session, credentials), job_id)

    return await gate.run(read)


DetachedJob = Annotated[Job, Depends(get_detached_job)]


SinceStep = Annotated[int | None, Query(ge=0, le=MAX_INTEGER,
                                        description="Only the steps after it")]
