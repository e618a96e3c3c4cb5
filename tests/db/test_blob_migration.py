"""Revision 0004 moves dataset content, checkpoints and weights out of SQL into the blob
store: on a database the previous revision filled, nothing stored before is lost, and the
datasets keep the split their jobs trained with."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from sqlalchemy import inspect, text

from core.npz import to_npz
from db.blobs import blob_store
from db.engine import make_engine, make_session_factory
from db.migrate import alembic_config, upgrade
from db.models import Checkpoint, Dataset, Job
from db.queries.checkpoints import read_checkpoint, read_weights, state_at
from db.settings import get_settings
from worker.loading import npz_rows

ROWS = 40


def _fill_at_0003(url: str) -> dict[str, bytes]:
    """A tenant, a dataset, a job with two checkpoints and both weights, as 0003 stored
    them; the bytes of each, by name."""
    rng = np.random.default_rng(0)
    content = to_npz({"X": rng.random((ROWS, 3)), "y": np.arange(ROWS) % 2})
    blobs = {"content": content, "state0": b"checkpoint at 0", "state7": b"checkpoint at 7",
             "final": b"final weights", "best": b"best weights"}
    engine = make_engine(url)
    now = "2026-12-01 00:00:00+00:00"
    try:
        with engine.begin() as connection:
            run = connection.execute
            run(text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'acme', :now)"),
                {"now": now})
            run(text("INSERT INTO datasets (id, tenant_id, name, sha256, content, size_bytes, "
                     "n_rows, n_features, n_targets, task, classes, created_at) VALUES "
                     "('d1', 't1', 'data.npz', :sha, :content, :size, :rows, 3, 1, "
                     "'classification', :classes, :now)"),
                {"sha": "0" * 64, "content": content, "size": len(content), "rows": ROWS,
                 "classes": json.dumps([0, 1]), "now": now})
            run(text("INSERT INTO jobs (id, tenant_id, dataset_id, name, tags, spec, status, "
                     "created_at, epoch, step, total_steps, attempt, cancel_requested) VALUES "
                     "('j1', 't1', 'd1', 'run', '{}', '{}', 'succeeded', :now, 1, 7, 7, 1, "
                     ":false)"), {"now": now, "false": False})
            for step, name in ((0, "state0"), (7, "state7")):
                run(text("INSERT INTO checkpoints (job_id, step, state, created_at) VALUES "
                         "('j1', :step, :state, :now)"),
                    {"step": step, "state": blobs[name], "now": now})
            for kind in ("final", "best"):
                run(text("INSERT INTO weights (job_id, kind, step, data, created_at) VALUES "
                         "('j1', :kind, 7, :data, :now)"),
                    {"kind": kind, "data": blobs[kind], "now": now})
    finally:
        engine.dispose()
    return blobs


@pytest.fixture
def url(request: pytest.FixtureRequest, sqlite_url: str, tmp_path: Path,
        clean_settings: pytest.MonkeyPatch) -> str:
    """A database at revision 0003, filled; the store is a directory of the test's own."""
    clean_settings.setenv("SHARDTRAIN_BLOB_DIR", str(tmp_path / "blobs"))
    return sqlite_url


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                            marks=pytest.mark.services)])
def test_blobs_move_to_the_store_and_nothing_is_lost(
        backend: str, url: str, request: pytest.FixtureRequest) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("new_postgres_database")()
    command.upgrade(alembic_config(url), "0003")
    blobs = _fill_at_0003(url)
    upgrade(url)

    store = blob_store(get_settings())
    engine = make_engine(url)
    try:
        columns = {table: {c["name"] for c in inspect(engine).get_columns(table)}
                   for table in ("datasets", "checkpoints", "weights")}
        assert not {"content", "state", "data"} & set().union(*columns.values())
        with make_session_factory(engine)() as session:
            dataset = session.get(Dataset, "d1")
            assert dataset is not None and dataset.layout == "npz"
            assert dataset.size_bytes == len(blobs["content"])
            rows = npz_rows(store, dataset)
            with np.load(io.BytesIO(blobs["content"])) as original:
                # The old split: all rows as uploaded, held out by each job's seed.
                assert rows.shape.split == "seeded" and np.array_equal(rows.X, original["X"])
            checkpoints = session.query(Checkpoint).order_by(Checkpoint.step).all()
            assert [read_checkpoint(store, c) for c in checkpoints] == [
                blobs["state0"], blobs["state7"]]
            assert [c.size_bytes for c in checkpoints] == [15, 15]
            for kind in ("final", "best"):
                assert read_weights(session, store, job_id="j1", kind=kind) == (7, blobs[kind])
            job = session.get(Job, "j1")
            assert job is not None
            latest = state_at(session, store, job=job, step=None)
            assert latest is not None and latest.data == blobs["final"]
    finally:
        engine.dispose()


def test_a_downgrade_brings_the_blobs_back_into_sql(url: str) -> None:
    command.upgrade(alembic_config(url), "0003")
    blobs = _fill_at_0003(url)
    upgrade(url)
    command.downgrade(alembic_config(url), "0003")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            content = connection.execute(text("SELECT content FROM datasets")).scalar_one()
            states = connection.execute(
                text("SELECT state FROM checkpoints ORDER BY step")).scalars().all()
        assert content == blobs["content"] and states == [blobs["state0"], blobs["state7"]]
    finally:
        engine.dispose()
