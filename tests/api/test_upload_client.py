"""``Client.upload_dataset`` and ``shardtrain datasets upload`` against a server on a loopback
port: the path chosen by size, progress, a failure resumed by a second call, and the bar."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from api.cli import app as cli
from api.cli.transfer import UploadDisplay
from api.client import ApiError, Client, Transfer
from api.main import create_app
from core.npz import to_npz
from db.blobs import MIN_PART
from db.settings import Settings, get_settings
from tests.utils.data import blobs
from tests.utils.server import serving
from tests.utils.uploads import BAD_PREFIX, MiB, digest_ingest, write_random


@pytest.fixture
def settings(migrated_sqlite_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "server", database_url=migrated_sqlite_url,
                    s3_part_bytes=MIN_PART, max_body_bytes=MiB)


@pytest.fixture
def url(settings: Settings) -> Iterator[str]:
    with serving(create_app(settings, ingest=digest_ingest)) as url:
        yield url


@pytest.fixture
def token(auth: dict[str, str]) -> str:
    return auth["Authorization"].removeprefix("Bearer ")


class CutAfter(httpx.BaseTransport):
    """The network goes away once ``budget`` bytes of request bodies have gone out."""

    def __init__(self, budget: int) -> None:
        self.budget, self.inner, self.down = budget, httpx.HTTPTransport(), False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("the network is down", request=request)
        stream = request.stream
        assert isinstance(stream, httpx.SyncByteStream)

        def cut() -> Iterator[bytes]:
            for chunk in stream:
                self.budget -= len(chunk)
                if self.budget < 0:
                    self.down = True
                    raise httpx.WriteError("the connection dropped", request=request)
                yield chunk

        if request.method == "PATCH":
            request.stream = _Stream(cut())
        return self.inner.handle_request(request)


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def test_a_small_file_goes_in_one_request(url: str, token: str, tmp_path: Path) -> None:
    X, y = blobs(n=50)
    path = tmp_path / "small.npz"
    path.write_bytes(to_npz({"X": X, "y": y}))
    heard: list[Transfer] = []
    with Client(url, token, resume_dir=tmp_path / "state") as client:
        dataset = client.upload_dataset(path, on_progress=heard.append)
    assert (dataset["n_rows"], dataset["name"], heard) == (50, "small.npz", [])


def test_a_large_file_goes_in_parts_and_becomes_a_dataset(url: str, token: str,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "large.npz"
    digest = write_random(path, 12 * MiB + 5)
    heard: list[Transfer] = []
    with Client(url, token, resume_dir=tmp_path / "state") as client:
        dataset = client.upload_dataset(path, name="big", on_progress=heard.append)
    assert (dataset["sha256"], dataset["name"]) == (digest, "big")
    sent = [t.sent for t in heard if t.stage == "sending"]
    assert sent == sorted(sent) and sent[-1] == path.stat().st_size
    assert heard[-1] == Transfer(path.stat().st_size, path.stat().st_size, "ingesting")
    assert not any(t.resumed_from is not None for t in heard)
    assert list((tmp_path / "state").iterdir()) == []  # done: nothing left to resume


def test_an_upload_cut_off_is_resumed_by_the_next_call(url: str, token: str,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "large.npz"
    digest = write_random(path, 16 * MiB)
    state = tmp_path / "state"
    cut = CutAfter(7 * MiB)
    with Client(url, token, resume_dir=state, transport=cut, retry_s=0.5) as client, \
            pytest.raises(httpx.TransportError):
        client.upload_dataset(path)
    assert len(list(state.iterdir())) == 1  # what the next call needs
    heard: list[Transfer] = []
    with Client(url, token, resume_dir=state) as client:
        dataset = client.upload_dataset(path, on_progress=heard.append)
    assert dataset["sha256"] == digest
    resumed = heard[0].resumed_from
    assert resumed is not None and 5 * MiB <= resumed <= 7 * MiB  # a part, and a tail
    assert list(state.iterdir()) == []


def test_a_file_the_server_refuses_fails_with_its_reason(url: str, token: str,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(BAD_PREFIX + b"x" * (2 * MiB))
    with Client(url, token, resume_dir=tmp_path / "state") as client, \
            pytest.raises(ApiError) as refused:
        client.upload_dataset(path)
    assert refused.value.status == 422 and "row 3" in str(refused.value)
    assert list((tmp_path / "state").iterdir()) == []


def test_the_cli_resumes_and_says_so(url: str, token: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A first attempt (here the client's) is cut off; the command goes on from there and,
    in a pipe, writes plain lines."""
    monkeypatch.setenv("SHARDTRAIN_DATA_DIR", str(tmp_path / "client"))
    get_settings.cache_clear()
    try:
        path = tmp_path / "large.npz"
        digest = write_random(path, 12 * MiB)
        with Client(url, token, transport=CutAfter(6 * MiB), retry_s=0.5) as client, \
                pytest.raises(httpx.TransportError):
            client.upload_dataset(path)
        result = CliRunner().invoke(cli, ["datasets", "upload", str(path), "--url", url,
                                          "--token", token])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("resuming large.npz: ") and "of 12.6 MB" in lines[0]
    assert any(line.startswith("sent 12.6 MB of 12.6 MB (100%)") for line in lines)
    assert "the service reads it into a dataset" in result.stderr
    dataset_id = result.stdout.strip()
    with Client(url, token) as client:
        assert client._call("GET", f"/v1/datasets/{dataset_id}").json()["sha256"] == digest


def test_the_bar_fits_80_columns() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, color_system=None)
    with UploadDisplay(console, "a-rather-long-file-name-for-a-bar.csv") as display:
        for sent in range(0, 200_000_001, 20_000_000):
            display(Transfer(sent, 200_000_000))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # cursor moves, colours
    rendered = [line for line in text.replace("\r", "\n").split("\n") if line.strip()]
    assert rendered and max(len(line) for line in rendered) <= 80
    assert any("a-rather-long-fil… " in line and "200.0/200.0 MB" in line
               for line in rendered)


def test_a_server_without_resumable_uploads_gets_one_request(
        settings: Settings, token: str, tmp_path: Path) -> None:
    path = tmp_path / "large.npz"
    write_random(path, 2 * MiB)
    with serving(create_app(settings, ingest=None)) as url, Client(url, token) as client, \
            pytest.raises(ApiError) as refused:
        client.upload_dataset(path)
    assert refused.value.status == 413 and "max_body_bytes" in str(refused.value)
