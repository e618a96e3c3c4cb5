"""A shardtrain deployment made of the processes of docker-compose.yml, run on this machine.

``Cluster.start`` runs the compose services' own commands (``bench.compose``)
against the local Redis, a PostgreSQL database of its own and a prefix of its own on an S3
server (``bench.seaweed``): ``migrate`` to completion, then
``api`` (uvicorn on a free loopback port) and N ``worker`` processes (celery, concurrency 1),
and waits until the API is ready and every worker answers a ping. A token comes from the
``shardtrain token create`` command, run with the same environment.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import redis
from celery import Celery

from api.client import Client
from bench.compose import (
    REPO_ROOT,
    load_compose,
    local_env,
    service_argv,
    service_environment,
)
from bench.processes import Process, Processes, wait_until
from bench.seaweed import BUCKET, SeaweedS3
from db.task_names import TRAIN_RANK
from worker.presence import IDLE_WORKERS

# Short joins and timeouts, so that a lost rank costs seconds; frequent metric writes, so that
# a job's progress is visible while it runs; one BLAS thread per process, as the image sets.
E2E_ENV = {
    "SHARDTRAIN_RANK_JOIN_S": "2",
    "SHARDTRAIN_RANK_TIMEOUT_S": "3",
    "SHARDTRAIN_METRICS_FLUSH_S": "0.2",
    "OPENBLAS_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}

MIGRATE_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Backends:
    """Where a cluster keeps its state: a database, a broker, a data plane and an S3 server
    for its blobs."""

    database_url: str
    broker_url: str
    redis_url: str
    s3: SeaweedS3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def console_script(name: str) -> str:
    """A console script installed beside this interpreter (the project's virtualenv)."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{name} is not installed beside {sys.executable}"
    return str(path)


class Cluster:
    """migrate, api and ``workers`` worker processes; stop it with ``stop``."""

    def __init__(self, workers: int, backends: Backends, log_dir: Path) -> None:
        compose = load_compose()
        self.workers = workers
        self.backends = backends
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**local_env(service_environment(compose, "worker"), backends.database_url,
                                backends.broker_url, backends.redis_url,
                                s3_endpoint_url=backends.s3.endpoint),
                    # The server's keys, and a prefix of this cluster's own in its bucket.
                    **backends.s3.env(BUCKET, prefix=f"cluster-{uuid4().hex[:12]}"),
                    **E2E_ENV}
        # Settings of worker i alone (1-based), over ``env``: e.g. a store endpoint of its own.
        self.worker_env: dict[int, dict[str, str]] = {}
        self._argv = {
            "migrate": service_argv(compose, "migrate"),
            "api": service_argv(compose, "api",
                                options={"--host": "127.0.0.1", "--port": str(self.port)}),
            "worker": service_argv(compose, "worker"),
        }
        self.processes = Processes(REPO_ROOT, log_dir)
        self.api: Process | None = None
        self.worker_processes: list[Process] = []
        # A client of the broker only, to ask the workers (ping, inspect).
        self.celery = Celery("shardtrain-e2e-control", broker=backends.broker_url)
        self.celery.conf.update(accept_content=["json"], task_serializer="json",
                                 broker_connection_retry_on_startup=True)
        self.token = ""
        self._client: Client | None = None
        self._http: httpx.Client | None = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Migrate, start everything, wait until it is ready and get a token. The processes
        get ``self.env`` as it is then (the services' environment, ``E2E_ENV`` and any
        change made to it before)."""
        self.processes.run("migrate", self._argv["migrate"], self.env, MIGRATE_TIMEOUT_S)
        self.api = self.processes.start("api", self._argv["api"], self.env)
        self.worker_processes = [
            self.processes.start(f"worker{i}", [*self._argv["worker"], "-n", f"w{i}@%h"],
                                 {**self.env, **self.worker_env.get(i, {})})
            for i in range(1, self.workers + 1)]
        wait_until("GET /readyz to answer 200", self._ready, READY_TIMEOUT_S,
                   context=self.describe)
        wait_until(f"{self.workers} workers to answer a ping",
                   lambda: len(self.ping()) == self.workers, READY_TIMEOUT_S,
                   context=self.describe)
        self.token = self.run_cli("token", "create", "--tenant", "e2e").strip().splitlines()[-1]
        self._client = Client(self.url, self.token, timeout=30.0)
        self._http = httpx.Client(base_url=self.url, timeout=30.0,
                                  headers={"Authorization": f"Bearer {self.token}"})

    def stop(self) -> None:
        """Stops every process (never raises) and closes the connections."""
        for closable in (self._client, self._http):
            if closable is not None:
                closable.close()
        self.processes.stop_all()
        self.celery.close()

    def run_cli(self, *args: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
        """The standard output of ``shardtrain ARGS``, run with the services' environment."""
        result = subprocess.run([console_script("shardtrain"), *args], env=self.env,
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                                check=False)
        assert result.returncode == 0, f"shardtrain {' '.join(args)}: {result.stderr}"
        return result.stdout

    def _ready(self) -> bool:
        self.check_alive()
        return httpx.get(f"{self.url}/readyz", timeout=3.0).status_code == 200

    def check_alive(self) -> None:
        """Fails naming the API or worker processes that have exited."""
        dead = [p for p in (self.api, *self.worker_processes) if p is not None and not p.alive()]
        assert not dead, "\n".join(p.describe() for p in dead)

    def describe(self) -> str:
        return self.processes.describe()

    # -- the API ----------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        assert self._client is not None, "the cluster has not started"
        return self._client

    def get_json(self, path: str, **params: Any) -> Any:
        """The JSON body of a GET, exactly as the server sent it (no conversion)."""
        assert self._http is not None, "the cluster has not started"
        response = self._http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def metrics(self, job_id: str) -> dict[str, list[Any]]:
        columns: dict[str, list[Any]] = self.get_json(f"/v1/jobs/{job_id}/metrics")
        return columns

    def wait_job(self, job_id: str, timeout: float, poll_s: float = 0.2) -> dict[str, Any]:
        """The job once it has ended, within ``timeout`` s (its processes must stay up),
        asking for it every ``poll_s`` s."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.client.job(job_id)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            self.check_alive()
            assert time.monotonic() < deadline, (
                f"job {job_id} still {job['status']} after {timeout} s: {job['progress']}\n"
                f"{self.describe()}")
            time.sleep(poll_s)

    # -- the workers, through the broker ----------------------------------------------------

    # Each broadcast on a connection of its own: on a reused Redis connection, the replies to
    # a broadcast that follows one ended by its timeout are lost (see worker/planning.py).

    def ping(self) -> list[str]:
        """The names of the workers answering within a second (sooner once all have)."""
        with self.celery.connection_for_write() as connection:
            replies = self.celery.control.ping(timeout=1.0, limit=self.workers,
                                                connection=connection) or []
        return [name for reply in replies for name in reply]

    def idle_set(self) -> set[str]:
        """The workers that count themselves idle in Redis (what sizes a job's ranks)."""
        with redis.Redis.from_url(self.backends.redis_url) as connection:
            return {name.decode() for name in connection.smembers(IDLE_WORKERS)}

    def active(self) -> dict[str, list[dict[str, Any]]]:
        """Each answering worker's running tasks (``name``, ``args``, ``worker_pid``, ...)."""
        with self.celery.connection_for_write() as connection:
            replies: dict[str, list[dict[str, Any]]] | None = self.celery.control.inspect(
                timeout=1.0, limit=self.workers, connection=connection).active()
        return replies or {}

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every worker answers and none runs a task (ranks of a finished job stop
        shortly after it ends: a job submitted before that would see fewer free workers)."""

        def idle() -> bool:
            active = self.active()
            return len(active) == self.workers and not any(active.values())

        wait_until("every worker to be idle", idle, timeout, interval=0.1,
                   context=lambda: f"active: {self.active()}")

    def rank_tasks(self, job_id: str) -> list[dict[str, Any]]:
        """The running ``shardtrain.train_rank`` tasks of job ``job_id``."""
        return [task for tasks in self.active().values() for task in tasks
                if task.get("name") == TRAIN_RANK and task.get("args", [None])[0] == job_id]
