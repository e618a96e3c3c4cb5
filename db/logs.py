"""Structured log lines for the API and the workers, each carrying the job id and rank.

A task runs inside ``job_context(job_id, rank)``; a filter on the handler copies both onto
every record logged meanwhile in that thread, whichever library logs it. ``configure_logging``
prints records as ``key=value`` text, or as one JSON object per line when ``log_json`` is set
(``SHARDTRAIN_LOG_JSON=1``), which log collectors parse without a pattern.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from db.settings import Settings

_job_id: ContextVar[str | None] = ContextVar("shardtrain_job_id", default=None)
_rank: ContextVar[int | None] = ContextVar("shardtrain_rank", default=None)


@contextmanager
def job_context(job_id: str, rank: int) -> Iterator[None]:
    """Log records of this thread carry ``job_id`` and ``rank`` (0: the leader) meanwhile."""
    job_token, rank_token = _job_id.set(job_id), _rank.set(rank)
    try:
        yield
    finally:
        _rank.reset(rank_token)
        _job_id.reset(job_token)


class JobContextFilter(logging.Filter):
    """Sets ``record.job_id`` and ``record.rank`` (None outside a job) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _job_id.get()
        record.rank = _rank.get()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "job_id", "rank"[, "exception"]}``."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", None),
            "rank": getattr(record, "rank", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class TextFormatter(logging.Formatter):
    """``time level logger job=<id> rank=<r> message``; job and rank only inside a job."""

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        where = f" job={job_id} rank={getattr(record, 'rank', None)}" if job_id else ""
        line = f"{_timestamp(record)} {record.levelname} {record.name}{where} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs, told apart from others' by its class."""


def configure_logging(settings: Settings, level: int | str = logging.INFO) -> None:
    """Log to stderr through the root logger in the format ``settings`` ask for.

    Idempotent: a handler installed by an earlier call is replaced, others are left alone.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(sys.stderr)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(JsonFormatter() if settings.log_json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
