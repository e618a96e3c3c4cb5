"""The web pages in headless Chromium: a finished run's page draws its loss curves."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.ui.conftest import FinishedRun

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("SHARDTRAIN_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def browse(tmp_path: Path, url: str, *action: str) -> str:
    """Chromium's output for ``url`` once its scripts have run (``--virtual-time-budget``
    lets timers and fetches settle before the DOM is dumped or the screenshot taken)."""
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", *action, url],
        capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


def paths(dom: str, cls: str) -> list[str]:
    """The ``d`` attribute of each SVG path of class ``curve <cls>``."""
    return re.findall(rf'<path d="([^"]*)" class="curve {cls}"', dom)


def test_the_pages_and_their_assets_are_served_without_a_token(finished_run: FinishedRun) -> None:
    for path, kind in (("/", "text/html"), (f"/runs/{finished_run.job_id}", "text/html"),
                       ("/static/common.js", "javascript"), ("/static/style.css", "text/css")):
        response = httpx.get(finished_run.url + path)
        assert response.status_code == 200 and kind in response.headers["content-type"], path
    # The data behind them is not: the pages send the token the user gives them.
    assert httpx.get(f"{finished_run.url}/v1/jobs").status_code == 401


def test_a_finished_run_page_draws_its_train_and_validation_curves(
        finished_run: FinishedRun, tmp_path: Path) -> None:
    url = f"{finished_run.url}/runs/{finished_run.job_id}?token={finished_run.token}"
    dom = browse(tmp_path, url, "--dump-dom")
    [train] = paths(dom, "train")
    [val] = paths(dom, "val")
    # One point per recorded step, one per epoch end; each an "M" or "L" command.
    assert len(re.findall(r"[ML][\d.]+,[\d.]+", train)) == finished_run.steps
    assert len(re.findall(r"[ML][\d.]+,[\d.]+", val)) == 3
    assert 'class="status succeeded"' in dom and "24 / 24" in dom
    assert '"activation": "tanh"' in dom  # the spec

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "run-page.png"
    shot.unlink(missing_ok=True)
    # The token is in the profile's localStorage now: the address no longer needs it.
    browse(tmp_path, f"{finished_run.url}/runs/{finished_run.job_id}",
           f"--screenshot={shot}", "--window-size=1200,1000")
    assert shot.stat().st_size > 10_000


def test_the_runs_page_lists_the_run_with_a_small_curve(
        finished_run: FinishedRun, tmp_path: Path) -> None:
    dom = browse(tmp_path, f"{finished_run.url}/?status=succeeded&token={finished_run.token}",
                 "--dump-dom")
    assert f'data-job="{finished_run.job_id}"' in dom and "blobs-page" in dom
    assert "team:ui" in dom
    [sparkline] = paths(dom, "train")
    assert len(re.findall(r"[ML][\d.]+,[\d.]+", sparkline)) == finished_run.steps

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "runs-page.png"
    shot.unlink(missing_ok=True)
    browse(tmp_path, f"{finished_run.url}/", f"--screenshot={shot}", "--window-size=1200,500")
    assert shot.stat().st_size > 5_000
    # A filter that matches nothing empties the table.
    dom = browse(tmp_path, f"{finished_run.url}/?status=failed", "--dump-dom")
    assert "data-job=" not in dom
