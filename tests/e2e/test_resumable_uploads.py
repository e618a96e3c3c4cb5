"""Resumable uploads through real uvicorn processes, storing into SeaweedFS, on PostgreSQL:
a 200 MB file whose connection is cut mid-way, resumed by a second call, with the API's peak
memory bounded; and an ingest whose process was killed, finished by another process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.client import Client, Transfer
from bench.cluster import console_script
from bench.processes import Process, wait_until
from bench.seaweed import BUCKET, SeaweedS3
from core.npz import to_npz
from core.splits import ingest_order
from db.blobs.datasets import StoredRows
from db.blobs.s3 import S3BlobStore
from db.engine import make_engine, make_session_factory, session_scope
from db.migrate import upgrade
from db.models import Upload
from db.queries.tenants import create_tenant, issue_token
from tests.reliability.tcp_proxy import TcpProxy
from tests.utils.server import free_port
from tests.utils.uploads import PATCH, TUS, MiB

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
RSS_GROWTH_MIB = 60
"""What the API's peak memory may grow by during the upload: a part (8 MiB) and its copy
for the store, a receive chunk, and what the allocator keeps; never the file."""
INGEST_GROWTH_MIB = 250
"""And once the file is read into a dataset: a batch, a bucket of the shuffle (1/256 of the
data), a part per store writer, and numpy's and the reader's buffers; never the file."""


@pytest.fixture(scope="module")
def backends(database_url: str, seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, str]:
    """The environment of the API processes: a migrated database, a prefix on SeaweedFS."""
    upgrade(database_url)
    prefix = f"resumable-{os.urandom(6).hex()}/"
    return {**os.environ, **seaweed.env(BUCKET, prefix), "SHARDTRAIN_DATABASE_URL":
            database_url, "SHARDTRAIN_DATA_DIR": str(tmp_path_factory.mktemp("api")),
            "SHARDTRAIN_INGEST_STALL_S": "2"}


@pytest.fixture(scope="module")
def token(database_url: str) -> str:
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return issue_token(session, tenant=create_tenant(session, name="uploader"))
    finally:
        engine.dispose()


@dataclass
class Api:
    process: Process
    url: str


@pytest.fixture
def start(backends: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], Api]]:
    """Starts ``uvicorn --factory tests.utils.upload_server:<factory>`` on a free port."""
    started: list[Api] = []

    def run(factory: str) -> Api:
        port = free_port()
        api = Api(Process(f"api-{len(started)}", [
            sys.executable, "-m", "uvicorn", "--factory",
            f"tests.utils.upload_server:{factory}", "--host", "127.0.0.1", "--port",
            str(port), "--log-level", "warning"], backends, REPO, tmp_path),
            f"http://127.0.0.1:{port}")
        started.append(api)
        wait_until(f"{factory} to answer", lambda: _answers(api.url), 30)
        return api

    yield run
    for api in started:
        if api.process.exit_status() is None:
            api.process.popen.send_signal(signal.SIGTERM)
            api.process.popen.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def stored_rows(seaweed: SeaweedS3, prefix: str, dataset_id: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """X and y of a dataset as stored, put back in the order of the upload."""
    rows = StoredRows(S3BlobStore(seaweed.client(), BUCKET, prefix=prefix.rstrip("/")),
                      dataset_id)
    X, y = rows.read(0, rows.manifest.n_rows)
    upload_order = np.argsort(ingest_order(len(X)))
    return X[upload_order], y[upload_order]


def test_a_200mb_npz_cut_midway_resumes_is_stored_bit_for_bit_and_the_api_stays_small(
        start: Callable[[str], Api], token: str, seaweed: SeaweedS3, backends: dict[str, str],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    X = rng.random((64_000, 781), dtype=np.float32)  # 200 MB
    y = rng.integers(0, 10, 64_000)
    path = tmp_path / "big.npz"
    path.write_bytes(to_npz({"X": X, "y": y}))
    size = path.stat().st_size
    api = start("app")
    proxy = TcpProxy(("127.0.0.1", int(api.url.rsplit(":", 1)[1])))
    through = f"http://127.0.0.1:{proxy.port}"
    state = tmp_path / "state"
    # A small upload first: the store's client, made on first use, is not the file's cost.
    warm_up(api.url, token, to_npz({"X": X[:100], "y": y[:100]}))
    before = peak_rss_mib(api.process.pid)

    def cut_at_half(transfer: Transfer) -> None:
        if transfer.sent >= size // 2:
            proxy.cut()  # both sides see the connection close; it stays down

    with Client(through, token, resume_dir=state, retry_s=1) as client, \
            pytest.raises(httpx.TransportError):
        client.upload_dataset(path, on_progress=cut_at_half)
    [saved] = state.iterdir()
    location = json.loads(saved.read_text())["url"]
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as http:
        stored = int(http.head(location, headers=TUS).headers["Upload-Offset"])
    assert 64 * MiB < stored <= size // 2  # a whole PATCH, and what came of the next

    proxy.restore()
    heard: list[Transfer] = []
    sent: list[tuple[float, float]] = []  # when the last byte was sent, and the API's peak

    def note(transfer: Transfer) -> None:
        heard.append(transfer)
        if transfer.stage == "ingesting" and not sent:
            sent.append((time.perf_counter(), peak_rss_mib(api.process.pid)))

    started = time.perf_counter()
    with Client(through, token, resume_dir=state) as client:
        dataset = client.upload_dataset(path, on_progress=note)
    ingested = peak_rss_mib(api.process.pid)
    sent_s, peak = sent[0][0] - started, sent[0][1]
    assert heard[0].resumed_from == stored
    assert (dataset["n_rows"], dataset["n_features"]) == (64_000, 781)
    stored_X, stored_y = stored_rows(seaweed, backends["SHARDTRAIN_S3_PREFIX"], dataset["id"])
    assert stored_X.dtype == np.float32
    np.testing.assert_array_equal(stored_X, X)  # bit for bit, in the upload's order
    np.testing.assert_array_equal(stored_y, y)  # y's classes are 0..9: indices equal labels
    proxy.close()

    raw = S3BlobStore(seaweed.client(), BUCKET, prefix=f"raw-{os.urandom(4).hex()}/")
    began = time.perf_counter()
    with path.open("rb") as file:
        raw.put("big", file)
    raw_s = time.perf_counter() - began
    raw.delete("big")
    with capsys.disabled():
        print(f"\nresumed {size - stored} bytes in {sent_s:.1f} s "
              f"({(size - stored) / sent_s / 1e6:.0f} MB/s); raw PUT of {size} bytes: "
              f"{raw_s:.1f} s ({size / raw_s / 1e6:.0f} MB/s); API peak RSS {before:.0f} -> "
              f"{peak:.0f} MiB sending, {ingested:.0f} MiB once ingested")
    assert peak - before < RSS_GROWTH_MIB, f"the API's peak RSS grew by {peak - before:.0f} MiB"
    assert ingested - before < INGEST_GROWTH_MIB, f"ingesting took {ingested - before:.0f} MiB"


def test_a_csv_of_millions_of_rows_through_the_cli_cut_and_resumed(
        start: Callable[[str], Api], token: str, seaweed: SeaweedS3, backends: dict[str, str],
        tmp_path: Path) -> None:
    rows = 3_000_000
    X = (np.arange(rows * 3, dtype=np.int64).reshape(rows, 3) % 9973) / 8.0  # exact in text
    y = np.arange(rows) % 7
    path = tmp_path / "long.csv"
    import pyarrow as pa  # the test extra's; written in C++, far faster than savetxt
    import pyarrow.csv as pa_csv

    pa_csv.write_csv(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": y}),
                     str(path))
    size = path.stat().st_size
    api = start("app")
    env = {**backends, "SHARDTRAIN_URL": api.url, "SHARDTRAIN_TOKEN": token,
           "SHARDTRAIN_DATA_DIR": str(tmp_path / "cli"), "COLUMNS": "80"}
    command = [console_script("shardtrain"), "datasets", "upload", str(path),
               "--target", "label"]
    cli = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    engine = make_engine(backends["SHARDTRAIN_DATABASE_URL"])

    def half_stored() -> bool:
        with make_session_factory(engine)() as session:
            return any(upload.offset >= size // 2 for upload in session.query(Upload)
                       if upload.meta.get("filename") == path.name)

    try:
        wait_until("half the CSV to be stored", half_stored, 120, interval=0.05)
    finally:
        engine.dispose()
    cli.kill()  # its connection closes mid-PATCH, as a user's Ctrl-C or a crash leaves it
    cli.wait(10)
    again = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resum" in again.stderr.lower(), again.stderr  # it says it went on
    dataset_id = again.stdout.strip().splitlines()[-1]
    stored_X, stored_y = stored_rows(seaweed, backends["SHARDTRAIN_S3_PREFIX"], dataset_id)
    np.testing.assert_array_equal(stored_X, X)
    np.testing.assert_array_equal(stored_y, y)


def send(url: str, token: str, data: bytes) -> str:
    """A tus upload of ``data`` in one PATCH; its location."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        location: str = http.post("/v1/uploads", headers={
            **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": "format bnB6"}
        ).headers["Location"]
        answer = http.patch(location, content=data, headers={**PATCH, "Upload-Offset": "0"})
        assert answer.status_code == 204, answer.text
    return location


def warm_up(url: str, token: str, data: bytes) -> None:
    location = send(url, token, data)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        wait_until("the warm-up's ingest", lambda: http.get(location).json()["status"]
                   == "ready", 20)


def test_an_ingest_whose_process_was_killed_is_finished_by_another(
        start: Callable[[str], Api], token: str, database_url: str) -> None:
    rng = np.random.default_rng(1)
    data = to_npz({"X": rng.random((3000, 400)), "y": rng.integers(0, 3, 3000)})  # 9.6 MB
    auth = {"Authorization": f"Bearer {token}"}
    first = start("hanging_app")
    location = send(first.url, token, data)
    assert httpx.get(first.url + location, headers=auth).json()["status"] == "ingesting"
    first.process.popen.send_signal(signal.SIGKILL)  # in the middle of its ingest
    first.process.popen.wait(10)
    time.sleep(2.5)  # INGEST_STALL_S: its heartbeat is now stale
    second = start("app")  # its first sweep, at start, takes the ingest over
    with httpx.Client(base_url=second.url, headers=auth) as http:
        wait_until("the second process to finish the ingest",
                   lambda: http.get(location).json()["status"] != "ingesting", 20)
        status = http.get(location).json()
    assert status["status"] == "ready", status
    assert (status["dataset"]["n_rows"], status["dataset"]["n_features"]) == (3000, 400)
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            upload = session.get(Upload, location.rsplit("/", 1)[1])
            assert upload is not None and upload.attempt == 2
    finally:
        engine.dispose()
