"""Probes, the OpenAPI document, and errors that are JSON whatever happens."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.deps import get_broker_check


def test_liveness_and_readiness(app: FastAPI, client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "broker": "ok", "detail": None}

    app.dependency_overrides[get_broker_check] = lambda: lambda timeout_s: False
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert (not_ready.json()["broker"], not_ready.json()["database"]) == ("unreachable", "ok")
    assert "broker" in not_ready.json()["detail"]


def test_the_api_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/v1/datasets", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/metrics",
            "/v1/jobs/{job_id}/weights", "/v1/jobs/{job_id}/predict",
            "/v1/jobs/{job_id}/cancel", "/healthz", "/readyz"} <= set(schema["paths"])
    upload = schema["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    assert {"application/octet-stream", "text/csv", "application/json",
            "multipart/form-data"} <= set(upload)
    assert "JobCreate" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_errors_are_json(client: TestClient, auth: dict[str, str]) -> None:
    missing = client.get("/v1/nothing", headers=auth)
    assert missing.status_code == 404 and missing.json()["detail"]
    garbled = client.post("/v1/jobs", content=b"{not json",
                          headers={**auth, "Content-Type": "application/json"})
    assert garbled.status_code == 422 and garbled.json()["detail"][0]["type"] == "json_invalid"
