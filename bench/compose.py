"""The processes of docker-compose.yml, runnable here: each service's argv and environment.

The end-to-end tests and the service benchmark start exactly the commands that compose runs
(migrate, api, worker) as local processes against the machine's own Redis and PostgreSQL, so
what they prove and measure is what a deployment runs. Only the addresses change: compose's
hostnames (``postgres``, ``redis``, ``seaweedfs``) become the local services' URLs.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

# The services that run the project image (the others are stock redis, postgres, seaweedfs).
PROJECT_SERVICES = ("migrate", "api", "worker")

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as plain data, with its YAML anchors and merge keys resolved."""
    import yaml  # pyyaml, of the test and bench extras; imported here, where it is needed

    with path.open(encoding="utf-8") as file:
        data = yaml.safe_load(file)
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ValueError(f"{path}: no services")
    return data


def service_environment(compose: Mapping[str, Any], name: str) -> dict[str, str]:
    """A service's ``environment``, in either of compose's forms (mapping or ``KEY=VALUE`` list)."""
    raw = compose["services"][name].get("environment") or {}
    if isinstance(raw, Mapping):
        return {str(key): "" if value is None else str(value) for key, value in raw.items()}
    env: dict[str, str] = {}
    for item in raw:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def service_argv(
    compose: Mapping[str, Any],
    name: str,
    *,
    options: Mapping[str, str] | None = None,
    resolve: bool = True,
) -> list[str]:
    """The argv that compose runs for service ``name``.

    ``options`` replaces the value after an option already in the command, e.g.
    ``{"--host": "127.0.0.1", "--port": "18001"}`` for a local API on a free port; an option
    the command lacks is an error, so a renamed flag cannot be silently ignored.
    ``resolve`` turns the program name into the one installed beside this interpreter (the
    virtualenv running the tests), falling back to ``PATH``.
    """
    command = compose["services"][name].get("command")
    if isinstance(command, str) or not isinstance(command, Sequence) or not command:
        # A string command would go through compose's own shell-like splitting: keep exec form.
        raise ValueError(f"service {name!r}: command must be a non-empty list, got {command!r}")
    argv = [str(part) for part in command]
    for option, value in (options or {}).items():
        try:
            index = argv.index(option)
        except ValueError:
            raise ValueError(f"service {name!r}: {option} is not in {argv}") from None
        if index + 1 >= len(argv):
            raise ValueError(f"service {name!r}: {option} has no value in {argv}")
        argv[index + 1] = value
    if resolve:
        argv[0] = _program(argv[0])
    return argv


def local_env(
    services_env: Mapping[str, str],
    database_url: str,
    broker_url: str,
    redis_url: str,
    *,
    s3_endpoint_url: str | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for a compose service run here, for ``subprocess.Popen(env=...)``.

    ``base`` (default: this process's environment) overlaid with the service's compose
    environment, whose database, broker and data-plane URLs (and S3 endpoint, when given) are
    replaced by the local ones and whose bind host becomes the loopback interface. Any other
    value still naming a host that is not local raises, so a new setting that points at a
    compose hostname is noticed rather than tried against a host that does not exist here.
    """
    env = dict(os.environ if base is None else base)
    env.update(services_env)
    env["SHARDTRAIN_DATABASE_URL"] = database_url
    env["SHARDTRAIN_BROKER_URL"] = broker_url
    env["SHARDTRAIN_REDIS_URL"] = redis_url
    if s3_endpoint_url is not None:
        env["SHARDTRAIN_S3_ENDPOINT_URL"] = s3_endpoint_url
    if "SHARDTRAIN_HOST" in env:
        env["SHARDTRAIN_HOST"] = "127.0.0.1"
    for key in services_env.keys() | {
        "SHARDTRAIN_DATABASE_URL",
        "SHARDTRAIN_BROKER_URL",
        "SHARDTRAIN_REDIS_URL",
    }:
        value = env[key]
        if "://" in value:
            host = urlsplit(value).hostname
            if host is not None and host not in LOCAL_HOSTS:
                raise ValueError(f"{key} still points at {host!r}, not at a local service")
    return env


def _program(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name!r} is neither beside {sys.executable} nor on PATH")
    return found
