"""The leader's writer thread: one write at a time, its outcome and its errors returned."""

from __future__ import annotations

import logging
import threading

import pytest

from db.logs import JobContextFilter, job_context
from worker.write_behind import WriteBehind


def test_a_write_runs_beside_the_caller_and_its_outcome_comes_back_once() -> None:
    writes = WriteBehind()
    release = threading.Event()
    try:
        writes.submit(lambda: release.wait(5))
        assert writes.busy and writes.outcome() is False  # still running: nothing yet
        with pytest.raises(RuntimeError, match="in flight"):
            writes.submit(lambda: True)
        release.set()
        assert writes.drain() is True
        assert not writes.busy and writes.outcome() is False  # taken already
    finally:
        writes.close()


def test_the_error_of_a_write_is_raised_in_the_caller() -> None:
    writes = WriteBehind()

    def failing() -> bool:
        raise ConnectionError("database went away")

    try:
        writes.submit(failing)
        with pytest.raises(ConnectionError, match="went away"):
            writes.drain()
    finally:
        writes.close()


def test_a_write_logs_with_the_callers_job_context() -> None:
    writes = WriteBehind()
    records: list[logging.LogRecord] = []

    def write() -> bool:
        record = logging.LogRecord("shardtrain", logging.INFO, __file__, 0, "written", None, None)
        JobContextFilter().filter(record)
        records.append(record)
        return False

    try:
        with job_context("job-1", rank=0):
            writes.submit(write)
        writes.drain()
    finally:
        writes.close()
    assert [(r.job_id, r.rank) for r in records] == [("job-1", 0)]  # type: ignore[attr-defined]
