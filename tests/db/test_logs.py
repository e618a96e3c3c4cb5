"""Structured log lines: JSON or text, each carrying the job id and rank of its task."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.logs import configure_logging, job_context
from db.settings import Settings

log = logging.getLogger("shardtrain.test")


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_json_lines_carry_the_job_and_rank_of_the_context(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_root: None) -> None:
    configure_logging(Settings(data_dir=tmp_path, log_json=True))
    configure_logging(Settings(data_dir=tmp_path, log_json=True))  # replaces, never doubles
    with job_context("job-1", rank=2):
        log.info("step %d done", 7)
    log.warning("outside")
    inside, outside = (json.loads(line) for line in _lines(capsys))
    assert inside["message"] == "step 7 done" and inside["level"] == "INFO"
    assert (inside["job_id"], inside["rank"], inside["logger"]) == ("job-1", 2, "shardtrain.test")
    assert (outside["job_id"], outside["rank"]) == (None, None)


def test_text_lines_name_the_job_and_rank_inside_a_job(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_root: None) -> None:
    configure_logging(Settings(data_dir=tmp_path))
    with job_context("job-2", rank=0):
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed")
    lines = _lines(capsys)
    assert lines[0].endswith("ERROR shardtrain.test job=job-2 rank=0 failed")
    assert lines[-1] == "ValueError: bad"
