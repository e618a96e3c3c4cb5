"""Scenarios 10 to 13: a bad request is a 422 naming the field or the limit, never a crash; a
body past the limit is a 413 before it is read whole. (A job whose loss became NaN answering
valid JSON is in test_job_control, which makes that job.)"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from bench.cluster import Cluster
from tests.e2e.checks import digits_spec
from tests.reliability.helpers import field_locs, http

pytestmark = pytest.mark.services

# Small enough that 100 epochs of the digits (1348 training rows) pass it.
ENV = {"SHARDTRAIN_MAX_COMPUTE": "100000", "SHARDTRAIN_MAX_BODY_BYTES": str(1024 * 1024)}
LIMIT = 1024 * 1024


def post_json(cluster: Cluster, path: str, body: bytes) -> Any:
    with http(cluster) as client:
        return client.post(path, content=body, headers={"Content-Type": "application/json"})


def test_malformed_json_is_a_422_naming_where(cluster: Cluster) -> None:
    response = post_json(cluster, "/v1/jobs", b'{"name": "x", "epochs": ')
    assert field_locs(response)[0][0] == "body"


@pytest.mark.parametrize(("field", "value", "loc"), [
    ("epochs", "ten", ["body", "epochs"]),
    ("batch_size", [32], ["body", "batch_size"]),
    ("model", {"hidden": "64"}, ["body", "model", "hidden"]),
    ("colour", "blue", ["body", "colour"]),        # unknown field
    ("tenant", "someone-else", ["body", "tenant"]),  # a client must not set it
    ("status", "succeeded", ["body", "status"]),
])
def test_a_wrong_or_forbidden_field_is_a_422_naming_it(
        cluster: Cluster, digits_dataset: str, field: str, value: Any,
        loc: list[str]) -> None:
    spec = {**digits_spec(digits_dataset), field: value}
    response = post_json(cluster, "/v1/jobs", json.dumps(spec).encode())
    assert loc in field_locs(response)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_non_finite_hyperparameters_are_a_422(cluster: Cluster, digits_dataset: str,
                                               literal: str) -> None:
    spec = json.dumps(digits_spec(digits_dataset, optimizer={"name": "sgd", "lr": 0.5}))
    body = spec.replace('"lr": 0.5', f'"lr": {literal}')
    assert ["body", "optimizer", "lr"] in field_locs(post_json(cluster, "/v1/jobs",
                                                               body.encode()))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e309"])
@pytest.mark.parametrize("where", ["X", "y"])
def test_non_finite_data_or_labels_are_a_422(cluster: Cluster, where: str,
                                            literal: str) -> None:
    arrays = {"X": "[[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]", "y": "[0.5, 1.5, 2.5]"}
    arrays[where] = arrays[where].replace("1.0]", f"{literal}]", 1).replace("1.5", literal)
    body = f'{{"X": {arrays["X"]}, "y": {arrays["y"]}}}'.encode()
    locs = field_locs(post_json(cluster, "/v1/datasets", body))
    assert locs and locs[0][0] == "body", locs


@pytest.mark.parametrize(("fields", "named"), [
    ({"model": {"hidden": [100_000, 100_000], "activation": "relu", "output": "softmax"}},
     "max_params"),
    ({"epochs": 10_000_000}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"epochs": 1000}, "max_compute"),  # 1348 rows x 1000 epochs > 100000
])
def test_absurd_sizes_are_a_422_naming_the_limit(cluster: Cluster, digits_dataset: str,
                                                 fields: dict[str, Any], named: str) -> None:
    response = post_json(cluster, "/v1/jobs",
                         json.dumps(digits_spec(digits_dataset, **fields)).encode())
    assert response.status_code == 422, response.text
    assert named in response.text, response.text


def _open(cluster: Cluster, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", cluster.port), timeout=10)
    sock.sendall(head.encode())
    return sock


def _status_line(sock: socket.socket) -> str:
    return sock.recv(65536).decode(errors="replace").split("\r\n", 1)[0]


def test_a_declared_length_past_the_limit_is_a_413_before_any_body_byte(
        cluster: Cluster) -> None:
    # Ten gigabytes announced, none sent: the answer cannot have waited for the body.
    head = (f"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cluster.token}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {10**10}\r\n\r\n")
    with _open(cluster, head) as sock:
        assert _status_line(sock).startswith("HTTP/1.1 413 ")


def test_a_chunked_body_past_the_limit_is_a_413_once_the_limit_is_passed(
        cluster: Cluster) -> None:
    # Without Content-Length the server counts: it answers once the limit is passed, while the
    # client still has most of its (nominally endless) body to send, and closes.
    head = (f"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cluster.token}"
            "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"[" + b"0," * (64 * 1024 - 1)
    sent = 0
    with _open(cluster, head) as sock:
        rss_before = _api_rss_kib(cluster)
        while sent <= 2 * LIMIT:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
        started = time.monotonic()
        assert _status_line(sock).startswith("HTTP/1.1 413 ")
        assert time.monotonic() - started < 5
    # What the server holds is bounded by the limit, not by what a client sends.
    assert _api_rss_kib(cluster) - rss_before < 64 * 1024


def _api_rss_kib(cluster: Cluster) -> int:
    assert cluster.api is not None
    with open(f"/proc/{cluster.api.pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])
