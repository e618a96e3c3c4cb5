"""The client side of a resumable upload (``api.routes.uploads`` tells the protocol).

A file goes in PATCHes of ``patch_bytes``, each read from the file as it is sent, so the
client never holds more than a read block. After an error it asks the server's offset (HEAD)
and goes on from there, for up to ``retry_s`` without progress; then it gives up, and a later
call for the same file resumes: a small state file, keyed by the server, the file's path,
size and modification time, remembers the upload's URL until it has become a dataset.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from api.client_errors import ApiError, checked

MiB = 1024 * 1024
PATCH_BYTES = 64 * MiB
READ_BYTES = 1 * MiB
RETRY_S = 60.0
"""How long to go on retrying without progress: past a writer lease (30 s) the server lets go."""
POLL_S = 0.5
TUS = {"Tus-Resumable": "1.0.0"}
# Refusals that a retry from the server's offset may get past: another offset, another
# request still writing, a server overloaded or restarting.
RETRIED = {409, 423, 500, 502, 503, 504}


@dataclass(frozen=True)
class Transfer:
    """Where an upload stands, as ``on_progress`` is told: ``sent`` of ``total`` bytes
    (sent, or stored at the server after a resume), ``resumed_from`` the offset a previous
    attempt left (on the first report only), ``stage`` sending or ingesting."""

    sent: int
    total: int
    stage: Literal["sending", "ingesting"] = "sending"
    resumed_from: int | None = None


Progress = Callable[[Transfer], None]


class ResumableUpload:
    """``run()`` sends ``path`` to the server of ``http`` and returns the dataset made of it.

    ``metadata`` is the upload's (``filename``, ``name``, ``target``, ``format``);
    ``state_dir`` keeps the state files (None: no resume across calls).
    """

    def __init__(self, http: httpx.Client, path: Path, *, metadata: dict[str, str],
                 state_dir: Path | None, on_progress: Progress | None = None,
                 retry_s: float = RETRY_S, patch_bytes: int = PATCH_BYTES) -> None:
        self.http, self.path, self.metadata = http, path, metadata
        self.on_progress = on_progress or (lambda transfer: None)
        self.retry_s, self.patch_bytes = retry_s, patch_bytes
        stat = path.stat()
        self.size = stat.st_size
        key = f"{http.base_url}\n{path.resolve()}\n{stat.st_size}\n{stat.st_mtime_ns}"
        self.state = None if state_dir is None else \
            state_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def run(self) -> dict[str, Any]:
        found = self._resume()
        if found is None:
            url, offset = self._create(), 0
        else:
            url, offset = found
            self.on_progress(Transfer(offset, self.size, resumed_from=offset))
        self._send(url, offset)
        self.on_progress(Transfer(self.size, self.size, stage="ingesting"))
        dataset: dict[str, Any] = self._retrying(lambda: self._wait(url))
        return dataset

    def _resume(self) -> tuple[str, int] | None:
        """The upload a previous call left, and its offset; None if there is none."""
        if self.state is None or not self.state.is_file():
            return None
        try:
            url = str(json.loads(self.state.read_text())["url"])
        except (OSError, ValueError, KeyError):
            self._forget()
            return None
        head = self.http.head(url, headers=TUS)
        if head.status_code in (404, 410) or \
                head.headers.get("Upload-Length") != str(self.size):
            self._forget()  # expired, or deleted: start again
            return None
        return url, int(checked(head).headers["Upload-Offset"])

    def _create(self) -> str:
        encoded = ",".join(f"{key} {base64.b64encode(value.encode()).decode()}"
                           for key, value in self.metadata.items())
        answer = checked(self.http.post("/v1/uploads", headers={
            **TUS, "Upload-Length": str(self.size), "Upload-Metadata": encoded}))
        url = answer.headers["Location"]
        if self.state is not None:
            self.state.parent.mkdir(parents=True, exist_ok=True)
            self.state.write_text(json.dumps({"url": url, "path": str(self.path),
                                              "size": self.size}))
        return url

    def _forget(self) -> None:
        if self.state is not None:
            self.state.unlink(missing_ok=True)

    def _send(self, url: str, offset: int) -> None:
        while offset < self.size:
            # After a failure, the server's offset (HEAD) is where the next PATCH starts.
            offset = self._retrying(functools.partial(self._patch, url, offset),
                                    functools.partial(self._offset, url))

    def _retrying(self, attempt: Callable[[], Any],
                  recover: Callable[[], Any] | None = None) -> Any:
        """``attempt()``; after a dropped connection or a refusal in RETRIED, a pause, then
        ``recover()`` (whose result is returned) or ``attempt()`` again, for up to
        ``retry_s``."""
        failed_at: float | None = None
        failures = 0
        while True:
            try:
                return attempt() if failures == 0 or recover is None else recover()
            except (httpx.TransportError, ApiError) as error:
                if isinstance(error, ApiError) and error.status not in RETRIED:
                    raise
                failures += 1
                failed_at = failed_at or time.monotonic()
                if time.monotonic() - failed_at > self.retry_s:
                    raise
                time.sleep(min(0.25 * 2 ** failures, 5.0))

    def _offset(self, url: str) -> int:
        """The server's offset, after a failure: where the upload resumes."""
        offset = int(checked(self.http.head(url, headers=TUS)).headers["Upload-Offset"])
        self.on_progress(Transfer(offset, self.size, resumed_from=offset))
        return offset

    def _patch(self, url: str, offset: int) -> int:
        end = min(offset + self.patch_bytes, self.size)

        def body() -> Iterator[bytes]:
            with self.path.open("rb") as file:
                file.seek(offset)
                at = offset
                while at < end:
                    block = file.read(min(READ_BYTES, end - at))
                    if not block:
                        raise OSError(f"{self.path} shrank while it was being uploaded")
                    yield block
                    at += len(block)
                    self.on_progress(Transfer(at, self.size))

        answer = checked(self.http.patch(url, content=body(), headers={
            **TUS, "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(offset), "Content-Length": str(end - offset)}))
        return int(answer.headers["Upload-Offset"])

    def _wait(self, url: str) -> dict[str, Any]:
        """The dataset, once the server has read the upload into one."""
        while True:
            upload = checked(self.http.get(url)).json()
            if upload["status"] == "ready":
                self._forget()
                dataset: dict[str, Any] = upload["dataset"]
                return dataset
            if upload["status"] == "failed":
                self._forget()
                raise ApiError(422, upload["error"])
            time.sleep(POLL_S)
