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


def test_a_database_that_cannot_be_reached_is_a_503_not_a_500(
        app: FastAPI, client: TestClient, auth: dict[str, str]) -> None:
    from sqlalchemy.exc import OperationalError

    from api.deps import get_session

    def unreachable() -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    app.dependency_overrides[get_session] = unreachable
    response = client.get("/v1/jobs", headers=auth)
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0 and "database" in response.json()["detail"]


def test_a_nul_character_in_a_parameter_is_a_422_naming_it(
        client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/v1/jobs", params={"name": "a\x00b"}, headers=auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "name"]
    assert client.get("/v1/jobs/a%00b", headers=auth).json()["detail"][0]["loc"] == \
        ["path", "job_id"]


def test_every_authenticated_operation_documents_401(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        if path.startswith("/v1/"):
            for method, operation in operations.items():
                assert "401" in operation["responses"], (method, path)


def test_a_405_allows_every_method_of_the_path(client: TestClient) -> None:
    response = client.request("OPTIONS", "/v1/datasets")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


def test_a_number_is_not_a_date_time(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/v1/jobs", params={"created_before": "0.5"}, headers=auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "created_before"]


def test_a_value_the_database_refuses_is_a_422_and_a_lost_connection_a_503(
        app: FastAPI, client: TestClient, auth: dict[str, str]) -> None:
    from sqlalchemy.exc import DataError, DBAPIError

    from api.deps import get_session

    def refuses() -> None:
        raise DataError("INSERT", {}, Exception("text fields cannot contain NUL (0x00) bytes\n"
                                                "SQL: INSERT ..."))

    app.dependency_overrides[get_session] = refuses
    response = client.get("/v1/jobs", headers=auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == (
        "a value cannot be stored: text fields cannot contain NUL (0x00) bytes")

    def invalidated() -> None:
        raise DBAPIError("SELECT 1", {}, Exception("server closed the connection"),
                         connection_invalidated=True)

    app.dependency_overrides[get_session] = invalidated
    assert client.get("/v1/jobs", headers=auth).status_code == 503
