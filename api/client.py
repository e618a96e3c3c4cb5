"""A Python client of the HTTP API (httpx), for scripts, notebooks and the CLI.

    client = Client("http://127.0.0.1:8000", token)
    dataset = client.upload_dataset("digits.npz")
    job = client.submit({"dataset": dataset["id"], "epochs": 20})
    for event in client.events(job["id"]):       # live progress until the job ends
        print(event.kind, event.data.get("step"), event.data.get("train_loss"))
    job = client.wait(job["id"])                 # or poll until it ends
    history = client.history(job["id"])          # numpy arrays by column
    weights = client.weights(job["id"])          # {"W1": ..., "b1": ..., ...}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from api.client_errors import ApiError, checked
from api.resumable_upload import RETRY_S, Progress, ResumableUpload, Transfer
from core.npz import from_npz
from db.settings import get_settings

__all__ = ["ApiError", "Client", "Event", "Transfer", "parse_sse"]

FINISHED = ("succeeded", "failed", "cancelled")
WAIT_POLL_S = 0.5
"""How often ``wait`` asks for the job."""
CONTENT_TYPES = {".npz": "application/octet-stream", ".csv": "text/csv",
                 ".parquet": "application/vnd.apache.parquet", ".json": "application/json"}
FORMATS = {"application/octet-stream": "npz", "text/csv": "csv", "application/json": "json",
           "application/vnd.apache.parquet": "parquet"}
"""The format of a resumable upload sent with an explicit content type."""
MAX_BODY_HEADER = "Shardtrain-Max-Body-Bytes"


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of ``GET /v1/jobs/{id}/events``.

    ``kind`` is ``progress`` (``data``: one step, see ``api.schemas.events``; ``id``: the
    step) or ``status`` (``data``: the whole job, as ``Client.job`` returns it).
    """

    kind: str
    data: dict[str, Any]
    id: str | None = None

    @property
    def final(self) -> bool:
        """The job has ended: this is the stream's last event."""
        return self.kind == "status" and self.data.get("status") in FINISHED


@dataclass
class _Fields:
    """The fields of the event being read, until the blank line that dispatches it."""

    kind: str = "message"
    data: list[str] = field(default_factory=list)
    id: str | None = None


def parse_sse(lines: Iterable[str]) -> Iterator[Event]:
    """Events of a ``text/event-stream``, given line by line (the subset the API sends:
    ``event``, ``data``, ``id``; ``retry`` and comments are skipped)."""
    fields = _Fields()
    for line in lines:
        if not line:
            if fields.data:
                yield Event(fields.kind, json.loads("\n".join(fields.data)), fields.id)
            fields = _Fields()
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            fields.kind = value
        elif name == "data":
            fields.data.append(value)
        elif name == "id":
            fields.id = value


class Client:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None,
                 resume_dir: Path | None = None, retry_s: float = RETRY_S) -> None:
        """``resume_dir`` keeps what a resumable upload needs to go on after a failure
        (default: ``uploads`` beside the CLI's ``client.json``); ``retry_s``: how long an
        upload goes on retrying without progress before it gives up."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout,
                                  transport=transport)
        self.resume_dir, self.retry_s = resume_dir, retry_s
        self._body_limit: int | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return checked(self._http.request(method, path, **kwargs))

    def upload_dataset(self, source: str | Path | bytes, *, name: str | None = None,
                       content_type: str | None = None, target: str | None = None,
                       on_progress: Progress | None = None) -> dict[str, Any]:
        """Upload an .npz, .csv, .parquet or .json file (or bytes, with ``content_type``).

        A file larger than the server takes in one request (its ``max_body_bytes``) goes
        in parts, resumably (``api.resumable_upload``): calling again for the same file
        after a failure goes on from where the server stands. ``on_progress`` hears how
        such an upload goes, then waits while the server reads it into a dataset.
        """
        if isinstance(source, bytes):
            body, name = source, name or "dataset"
        else:
            path = Path(source)
            limit = self._single_request_limit()
            if limit is not None and path.stat().st_size > limit:
                return self._resumable(path, name=name, content_type=content_type,
                                       target=target, on_progress=on_progress)
            body, name = path.read_bytes(), name or path.name
            content_type = content_type or CONTENT_TYPES.get(path.suffix.lower())
        params = {"name": name, **({"target": target} if target else {})}
        headers = {"Content-Type": content_type or "application/octet-stream"}
        return self._call("POST", "/v1/datasets", params=params, content=body,
                          headers=headers).json()

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset (refused with 409 while a queued or running job uses it)."""
        self._call("DELETE", f"/v1/datasets/{dataset_id}")

    def _single_request_limit(self) -> int | None:
        """The largest body the server takes (it says so to OPTIONS /v1/uploads); None if
        it takes no resumable uploads."""
        if self._body_limit is None:
            answer = self._http.options("/v1/uploads")
            self._body_limit = int(answer.headers.get(MAX_BODY_HEADER, -1)) \
                if answer.status_code == 204 else -1
        return None if self._body_limit < 0 else self._body_limit

    def _resumable(self, path: Path, *, name: str | None, content_type: str | None,
                   target: str | None, on_progress: Progress | None) -> dict[str, Any]:
        fmt = FORMATS.get(content_type or "")
        metadata = {"filename": path.name, **({"name": name} if name else {}),
                    **({"target": target} if target else {}), **({"format": fmt} if fmt else {})}
        state_dir = self.resume_dir or get_settings().data_dir / "uploads"
        return ResumableUpload(self._http, path, metadata=metadata, state_dir=state_dir,
                               on_progress=on_progress, retry_s=self.retry_s).run()

    def delete_job(self, job_id: str) -> None:
        """Delete an ended job with its history, checkpoints and weights."""
        self._call("DELETE", f"/v1/jobs/{job_id}")

    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None
               ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/jobs", json=spec, headers=headers).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}").json()

    def wait(self, job_id: str, *, poll_s: float = WAIT_POLL_S, timeout: float | None = None,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the job ends; returns its last state (whatever the outcome)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["status"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll_s)

    def events(self, job_id: str, *, since_step: int | None = None,
               retries: int = 5) -> Iterator[Event]:
        """The job's events (``GET /v1/jobs/{id}/events``) until it ends, the last one a
        final ``status``; only the steps after ``since_step`` when given.

        A dropped connection is resumed with ``Last-Event-ID``, so no step is missed or
        repeated; ``retries`` failures in a row (with backoff) give up with the error.
        """
        last = str(since_step) if since_step is not None else None
        failures = 0
        while True:
            headers = {"Last-Event-ID": last} if last is not None else {}
            error: Exception
            try:
                with self._http.stream("GET", f"/v1/jobs/{job_id}/events",
                                       headers=headers) as response:
                    if response.is_error:
                        response.read()
                        checked(response)
                    for event in parse_sse(response.iter_lines()):
                        failures = 0
                        last = event.id or last
                        yield event
                        if event.final:
                            return
                error = ConnectionError(f"the events of job {job_id} stopped before it ended")
            except httpx.TransportError as dropped:
                error = dropped
            # Dropped, or closed early by a restarting server: resume after a pause.
            failures += 1
            if failures > retries:
                raise error
            time.sleep(min(0.25 * 2 ** failures, 5.0))

    def history(self, job_id: str, *, since_step: int | None = None,
                max_points: int | None = None) -> dict[str, np.ndarray]:
        """The loss history as float arrays (NaN where a value was not recorded)."""
        params = {k: v for k, v in (("since_step", since_step), ("max_points", max_points))
                  if v is not None}
        columns = self._call("GET", f"/v1/jobs/{job_id}/metrics", params=params).json()
        return {name: np.array([np.nan if v is None else v for v in values], dtype=float)
                for name, values in columns.items() if isinstance(values, list)}

    def weights_npz(self, job_id: str, checkpoint: str = "final") -> bytes:
        return self._call("GET", f"/v1/jobs/{job_id}/weights",
                          params={"checkpoint": checkpoint}).content

    def weights(self, job_id: str, checkpoint: str = "final") -> dict[str, np.ndarray]:
        return from_npz(self.weights_npz(job_id, checkpoint))

    def predict(self, job_id: str, X: np.ndarray | list[list[float]]) -> dict[str, Any]:
        rows = np.asarray(X).tolist()
        return self._call("POST", f"/v1/jobs/{job_id}/predict", json={"X": rows}).json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel").json()

    def runs(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call("GET", "/v1/jobs", params=params).json()
