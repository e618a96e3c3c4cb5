"""Scenario 15: Schemathesis, with all its checks, against the OpenAPI document, as two
tenants: no failures. Bounded by a number of examples per operation and a time budget."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.cluster import Cluster, console_script
from tests.reliability.helpers import new_token

pytestmark = pytest.mark.services

MAX_EXAMPLES = 8
# A budget per tenant; the whole run must stay bounded even if the API slows down.
MAX_TIME_S = 15
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.parametrize("tenant", ["alpha", "beta"])
def test_schemathesis_finds_no_failure(cluster: Cluster, digits_dataset: str, tenant: str,
                                       tmp_path: Path) -> None:
    token = cluster.token if tenant == "alpha" else new_token(cluster, tenant)
    result = subprocess.run(
        [console_script("schemathesis"), "--config-file", str(CONFIG), "run",
         f"{cluster.url}/openapi.json",
         "--checks", "all", "--header", f"Authorization: Bearer {token}",
         "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_TIME_S),
         # Deterministic generation: the same requests every run, so no flaky findings. One
         # worker: Hypothesis's lambda introspection is not thread-safe on Python 3.11.
         "--workers", "1", "--generation-deterministic",
         "--report-dir", str(tmp_path)],
        # Run in a directory of its own: Schemathesis keeps a cache in its working directory.
        cwd=tmp_path, capture_output=True, text=True, timeout=MAX_TIME_S + 60, check=False)
    (tmp_path / "schemathesis.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
