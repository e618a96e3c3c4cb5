"""The embedded default in one process: migrations, a local token, a worker thread and the API.

``shardtrain serve`` runs it in the foreground; ``shardtrain demo`` in the background while it
drives the API as a client would. The API follows the settings given; the worker thread, like
any worker process, follows the environment's (``get_settings()``), so the two must agree.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn

from api.deps import session_factory
from db.engine import session_scope
from db.migrate import upgrade
from db.queries.tenants import create_tenant, issue_token, tenant_for_token
from db.settings import Settings, get_settings

if TYPE_CHECKING:
    from worker.embedded import EmbeddedWorker

LOCAL_TENANT = "local"


def client_config_path(settings: Settings) -> Path:
    """Where ``serve`` leaves the URL and token for the local user's CLI and scripts."""
    return settings.data_dir / "client.json"


def local_token(settings: Settings) -> str:
    """The token of the local tenant: the one saved earlier if still valid, else a new one."""
    path = client_config_path(settings)
    saved = json.loads(path.read_text()).get("token") if path.exists() else None
    with session_scope(session_factory(settings)) as session:
        if saved and tenant_for_token(session, token=saved) is not None:
            return str(saved)
        return issue_token(session, tenant=create_tenant(session, name=LOCAL_TENANT))


class LocalService:
    """Context manager: the whole service on this machine, reachable at ``url``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.url = f"http://{self.settings.host}:{self.settings.port}"
        self.token = ""
        self._worker: EmbeddedWorker | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def prepare(self) -> None:
        """Schema, token and (on the in-process broker) a worker thread."""
        upgrade(self.settings.database_url)
        self.token = local_token(self.settings)
        path = client_config_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"url": self.url, "token": self.token}))
        path.chmod(0o600)
        if self.settings.is_embedded:
            # The worker that consumes the in-process broker must live in this process.
            from worker.embedded import EmbeddedWorker

            self._worker = EmbeddedWorker()
            self._worker.start()

    def _make_server(self) -> uvicorn.Server:
        from api.main import create_app

        # Open event streams end on shutdown after this many seconds instead of holding it.
        config = uvicorn.Config(create_app(self.settings), host=self.settings.host,
                                port=self.settings.port, log_level="warning",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        return self._server

    def serve_forever(self) -> None:
        self._make_server().run()

    def __enter__(self) -> LocalService:
        self.prepare()
        server = self._make_server()
        self._thread = threading.Thread(target=server.run, name="shardtrain-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.url} (is the port taken?)")
            time.sleep(0.05)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._worker is not None:
            self._worker.stop()
