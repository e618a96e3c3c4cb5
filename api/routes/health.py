"""Liveness and readiness probes, for orchestrators and load balancers (no token needed)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import BrokerCheckDep, SessionDep
from api.schemas.health import Check, Liveness, Readiness

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 2.0


@router.get("/healthz", response_model=Liveness)
def liveness() -> Liveness:
    """The process answers; says nothing about its database or broker."""
    return Liveness()


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Database or broker unreachable"}})
def readiness(session: SessionDep, broker_reachable: BrokerCheckDep,
              response: Response) -> Readiness:
    """Ready when the database answers a query and the broker accepts a connection."""
    database: Check = "ok"
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        session.rollback()  # so that closing the request's session does not raise again
        database = "unreachable"
    broker: Check = "ok" if broker_reachable(BROKER_TIMEOUT_S) else "unreachable"
    if database == "ok" and broker == "ok":
        return Readiness(status="ready", database=database, broker=broker)
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    down = " and ".join(name for name, check in (("database", database), ("broker", broker))
                        if check != "ok")
    return Readiness(status="not ready", database=database, broker=broker,
                     detail=f"not ready: {down} unreachable")
