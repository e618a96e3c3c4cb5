"""The API under more requests than it can serve: uvicorn as compose starts it, on PostgreSQL.

Past capacity, requests wait briefly for a database slot and are then answered 503 with
Retry-After (``api.admission``): never 500, never minutes of silence, and the API answers at
once when the load drops. SIGTERM ends it within its graceful-shutdown bound, however busy.
A long history is read without the API's memory growing with it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from bench.cluster import Backends, Cluster
from bench.load import Outcome, burst, get_request, open_loop
from bench.processes import Process
from bench.seaweed import SeaweedS3
from db.queries.metrics import upsert_metrics
from tests.reliability.conftest import start_cluster

pytestmark = pytest.mark.services

WORKERS = 0
BURST = 300
BURST_BOUND_S = 30.0  # every answer of the burst within this
SHUTDOWN_BOUND_S = 10.0  # compose's --timeout-graceful-shutdown is 5 s
HISTORY_STEPS = 1_000_000
RSS_GROWTH_BOUND_MB = 100.0  # peak growth over 6 concurrent reads of the long history


def job_id(cluster: Cluster) -> str:
    body = json.dumps({"X": [[0.0, 1.0], [1.0, 0.0]] * 20, "y": [0, 1] * 20}).encode()
    dataset = cluster.client.upload_dataset(body, content_type="application/json")["id"]
    return str(cluster.client.submit({"dataset": dataset, "model": {"hidden": [4]},
                                      "epochs": 1})["id"])


@pytest.fixture(scope="module")
def job(cluster: Cluster) -> str:
    """A job that stays queued (there is no worker): its reads are all the load."""
    return job_id(cluster)


def read(cluster: Cluster, path: str) -> tuple[int, float]:
    """A single request's status and seconds, with the test's token."""
    start = time.monotonic()
    response = httpx.get(f"{cluster.url}{path}", timeout=30.0,
                         headers={"Authorization": f"Bearer {cluster.token}"})
    return response.status_code, time.monotonic() - start


def raw_get(cluster: Cluster, path: str) -> bytes:
    return get_request("127.0.0.1", cluster.port, path, cluster.token)


def assert_only_200_and_503(outcome: Outcome) -> None:
    assert set(outcome.counts) <= {200, 503, "unsent"}, outcome.counts


def test_a_burst_past_capacity_is_answered_200_or_503_and_the_api_recovers_at_once(
        cluster: Cluster, job: str) -> None:
    outcome = asyncio.run(burst("127.0.0.1", cluster.port, raw_get(cluster, f"/v1/jobs/{job}"),
                                count=BURST, timeout_s=BURST_BOUND_S + 15))
    assert_only_200_and_503(outcome)
    assert outcome.counts[200] > 0
    assert outcome.max_s < BURST_BOUND_S, outcome.max_s
    time.sleep(2.0)
    status, seconds = read(cluster, f"/v1/jobs/{job}")
    assert status == 200 and seconds < 1.0, (status, seconds)


def test_an_overload_held_for_20_s_leaves_the_api_answering_within_a_second(
        cluster: Cluster, job: str) -> None:
    outcome = asyncio.run(open_loop("127.0.0.1", cluster.port,
                                    raw_get(cluster, f"/v1/jobs/{job}"), rate=400.0,
                                    seconds=20.0, connections=200, timeout_s=30.0))
    assert_only_200_and_503(outcome)
    # Past capacity: requests were refused, or waited for a connection past the end.
    assert outcome.counts[503] + outcome.counts["unsent"] > 0, outcome.counts
    status, seconds = read(cluster, f"/v1/jobs/{job}")
    assert status == 200 and seconds < 1.0, (status, seconds)


def test_sigterm_during_a_burst_ends_the_api_within_its_bound(
        database_url: str, redis_urls: tuple[str, str], seaweed: SeaweedS3,
        tmp_path: Path) -> None:
    api = start_cluster(0, Backends(database_url, *redis_urls, seaweed), tmp_path)
    try:
        target = job_id(api)
        outcomes: list[Outcome] = []
        load = threading.Thread(target=lambda: outcomes.append(asyncio.run(burst(
            "127.0.0.1", api.port, raw_get(api, f"/v1/jobs/{target}"), count=BURST,
            timeout_s=BURST_BOUND_S))))
        load.start()
        time.sleep(0.5)
        process: Process | None = api.api
        assert process is not None
        terminated = time.monotonic()
        process.signal(signal.SIGTERM)
        assert process.wait_exit(SHUTDOWN_BOUND_S), (
            f"the API still runs {SHUTDOWN_BOUND_S} s after SIGTERM\n{process.describe()}")
        exited_after = time.monotonic() - terminated
        load.join()
        # Requests in flight were answered or cut; none got a 500.
        assert 500 not in outcomes[0].counts, outcomes[0].counts
        assert exited_after < SHUTDOWN_BOUND_S
    finally:
        api.stop()


def vm_kib(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM``-style field of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


@pytest.fixture(scope="module")
def long_history(cluster: Cluster, database_url: str) -> Iterator[str]:
    """A job with 1,000,000 recorded steps, written by the leader's own upsert, in batches."""
    target = job_id(cluster)
    engine = create_engine(database_url)
    try:
        batch = 50_000
        for start in range(1, HISTORY_STEPS + 1, batch):
            with Session(engine) as session:
                upsert_metrics(session, job_id=target, rows=[
                    (step, step // 1000 + 1, 1.0 / step, 0.5 / step if step % 1000 == 0
                     else None, None) for step in range(start, start + batch)])
                session.commit()
        with engine.connect() as connection:
            # What autovacuum does soon after such a write; the planner then reads a page of
            # the history off the primary key instead of sorting the job's rows.
            connection.execute(text("ANALYZE metrics"))
            connection.commit()
        yield target
    finally:
        engine.dispose()


def test_reading_a_history_of_a_million_steps_keeps_the_api_memory_bounded(
        cluster: Cluster, long_history: str) -> None:
    process = cluster.api
    assert process is not None
    path = f"/v1/jobs/{long_history}/metrics"
    status, _ = read(cluster, f"{path}?max_points=80")  # warm: imports, pools, caches
    assert status == 200
    before = vm_kib(process.pid, "VmRSS")

    async def reads() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=cluster.url, timeout=120.0, headers={
                "Authorization": f"Bearer {cluster.token}"}) as client:
            requests = [client.get(path, params={"max_points": 1000}) for _ in range(4)]
            requests += [client.get(path), client.get(path, params={"format": "csv"})]
            return list(await asyncio.gather(*requests))

    responses = asyncio.run(reads())
    assert [r.status_code for r in responses] == [200] * 6
    downsampled, whole, csv = responses[0].json(), responses[4].json(), responses[5].text
    assert len(downsampled["step"]) <= 1000
    assert downsampled["step"][0] == 1 and downsampled["step"][-1] == HISTORY_STEPS
    assert len(whole["step"]) == len(whole["val_loss"]) == HISTORY_STEPS
    assert whole["step"][-1] == HISTORY_STEPS and whole["val_loss"][999] == 0.5 / 1000
    assert csv.count("\n") == HISTORY_STEPS + 1
    growth_mb = (vm_kib(process.pid, "VmHWM") - before) / 1024
    assert growth_mb < RSS_GROWTH_BOUND_MB, f"the API grew {growth_mb:.0f} MB"
