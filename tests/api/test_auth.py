"""Bearer tokens, and tenants that never see each other's datasets or jobs."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from db.engine import SessionFactory, session_scope
from db.queries.tenants import revoke_token
from tests.utils.api import submitted, upload
from tests.utils.data import blobs


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer not-a-token",
])
def test_requests_without_a_valid_token_get_401(client: TestClient,
                                                authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/datasets"), ("POST", "/v1/jobs"),
                         ("POST", "/v1/datasets"), ("GET", "/v1/jobs/abc/metrics")):
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"]


def test_a_revoked_token_gets_401(client: TestClient, auth: dict[str, str],
                                  session_factory: SessionFactory) -> None:
    assert client.get("/v1/jobs", headers=auth).status_code == 200
    with session_scope(session_factory) as session:
        assert revoke_token(session, token=auth["Authorization"].removeprefix("Bearer "))
    response = client.get("/v1/jobs", headers=auth)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_another_tenants_ids_answer_404(client: TestClient, auth: dict[str, str],
                                        other_auth: dict[str, str]) -> None:
    dataset = upload(client, auth, *blobs())["id"]
    job = submitted(client, auth, dataset)["id"]
    for method, path, missing in (
            ("GET", f"/v1/datasets/{dataset}", f"no dataset {dataset}"),
            ("GET", f"/v1/jobs/{job}", f"no job {job}"),
            ("GET", f"/v1/jobs/{job}/metrics", f"no job {job}"),
            ("GET", f"/v1/jobs/{job}/weights", f"no job {job}"),
            ("POST", f"/v1/jobs/{job}/predict", f"no job {job}"),
            ("POST", f"/v1/jobs/{job}/cancel", f"no job {job}")):
        body = {"X": [[0, 0, 0, 0]]} if path.endswith("predict") else None
        theirs = client.request(method, path, headers=other_auth, json=body)
        assert (theirs.status_code, theirs.json()) == (404, {"detail": missing}), path
        assert client.request(method, path, headers=auth, json=body).json() != theirs.json()
    assert client.get("/v1/jobs", headers=other_auth).json()["items"] == []
    assert client.get("/v1/datasets", headers=other_auth).json()["items"] == []
    # The same content uploaded by the other tenant is a dataset of its own.
    assert upload(client, other_auth, *blobs())["id"] != dataset
