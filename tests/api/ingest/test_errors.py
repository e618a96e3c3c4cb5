"""Bad uploads: each refused with a message naming the problem (and the row, as uploaded),
and nothing left behind: no dataset row, no blob under datasets/, no unfinished multipart
upload, no spool file. CSV cases run on both parsers, with the same words."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.services.errors import InvalidInput, ServiceError, TooLarge
from api.services.ingest import UploadFormat
from core.data import InvalidDataError
from db.blobs.datasets import RowsWriter
from tests.api.ingest.conftest import Ingester
from tests.api.ingest.formats import as_csv, as_npz, as_parquet, without_pyarrow
from tests.utils.blobs import leftovers

Upload = tuple[bytes, UploadFormat, str | None]
rng = np.random.default_rng(7)
X8, Y8 = rng.normal(size=(8, 2)), np.arange(8) % 2


def forged_npz() -> bytes:
    """X.npy's header declares 4 PB over 16 bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**12, 1000)})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("X.npy", header.getvalue() + b"\0" * 16)
        y = io.BytesIO()
        np.save(y, np.arange(2))
        archive.writestr("y.npy", y.getvalue())
    return out.getvalue()


def nan_far_in_npz() -> bytes:
    """600,000 rows (enough that the spool's buckets went to files), NaN at row 550,000."""
    X = np.ones((600_000, 8))
    X[550_000, 5] = np.nan
    return as_npz(X, np.arange(600_000) % 3)


def damaged_npz() -> bytes:
    """A compressed .npz whose X member is damaged in its middle."""
    body = bytearray(as_npz(rng.normal(size=(50_000, 4)), np.arange(50_000) % 2,
                            compressed=True))
    body[len(body) // 3:len(body) // 3 + 64] = bytes(64)
    return bytes(body)


def csv_with(line: int, row: str, rows: int = 200_000) -> bytes:
    """A CSV of ``rows`` data rows "1,2,0" with line ``line`` (the header is 1) replaced."""
    body = bytearray(b"f0,f1,label\n" + b"1,2,0\n1,2,1\n" * (rows // 2))
    start = 12 + (line - 2) * 6
    return bytes(body[:start] + row.encode() + b"\n" + body[start + 6:])


def npy() -> bytes:
    out = io.BytesIO()
    np.save(out, X8)
    return out.getvalue()


PARQUET = as_parquet(X8, Y8)
# (upload, settings, error, message): the message is the whole of the error's text.
CASES: dict[str, tuple[Callable[[], Upload], dict[str, Any], type[Exception], str]] = {
    "truncated parquet": (lambda: (PARQUET[:len(PARQUET) // 2], "parquet", "label"), {},
                          InvalidDataError, "not a Parquet file, or a truncated one: Parquet "
                          "magic bytes not found in footer. Either the file is corrupted or "
                          "this is not a parquet file."),
    "forged npy header": (lambda: (forged_npz(), "npz", None), {}, InvalidDataError,
                          "X.npy declares shape (1000000000000, 1000) of float32 "
                          "(4000000000000000 bytes) but holds 16 bytes"),
    "nan far in an npz": (lambda: (nan_far_in_npz(), "npz", None), {}, InvalidDataError,
                          "row 550000, X column 5 is nan: NaN or Inf cannot train"),
    "damaged npz": (lambda: (damaged_npz(), "npz", None), {}, InvalidDataError,
                    "the .npz is damaged after row"),
    "an npy": (lambda: (npy(), "npz", None), {}, InvalidDataError,
               "this is not an .npz but an .npy holds one array; a dataset needs X and y: save "
               "them together with numpy.savez('data.npz', X=X, y=y)"),
    "single class": (lambda: (as_npz(X8, np.full(8, 3)), "npz", None), {}, InvalidDataError,
                     "y holds a single class (3): nothing to learn"),
    "rows declared": (lambda: (as_npz(X8, Y8), "npz", None), {"max_rows": 7}, InvalidInput,
                      "X has 8 rows, more than the limit max_rows=7"),
    "bytes declared": (lambda: (as_npz(np.zeros((20_000, 100)), np.arange(20_000) % 2,
                                       compressed=True), "npz", None),
                       {"max_dataset_bytes": 1_000_000}, InvalidInput,
                       "X's 20000 rows take 16000000 bytes, more than the limit "
                       "max_dataset_bytes=1000000"),
    "upload bytes": (lambda: (as_npz(X8, Y8), "npz", None), {"max_dataset_bytes": 100},
                     InvalidInput, "the upload holds 682 bytes, more than the limit "
                     "max_dataset_bytes=100"),
    "quota": (lambda: (as_npz(X8, Y8), "npz", None), {"tenant_quota_bytes": 100}, TooLarge,
              "storage quota exceeded: tenant_quota_bytes=100, and you hold 0 bytes already "
              "(datasets, uploads, checkpoints and weights); this adds 160. Delete datasets or "
              "jobs you no longer need"),
    "parquet without pyarrow": (lambda: (PARQUET, "parquet", "label"), {"no_pyarrow": True},
                                InvalidInput, "reading Parquet needs pyarrow, which this "
                                "server lacks: pip install 'shardtrain[tabular]'"),
}
CSV_CASES: dict[str, tuple[Callable[[], bytes], dict[str, Any], type[Exception], str]] = {
    "not a number": (lambda: csv_with(3, "1,abc,1"), {}, InvalidDataError,
                     "CSV line 3, column 'f1': 'abc' is not a number"),
    "not a number far": (lambda: csv_with(150_002, "1_000,2,1"), {}, InvalidDataError,
                         "CSV line 150002, column 'f0': '1_000' is not a number"),
    "empty cell": (lambda: csv_with(3, "1,,1"), {}, InvalidDataError,
                   "CSV line 3, column 'f1' is empty: every feature needs a number"),
    "empty label": (lambda: csv_with(9, "1,2, "), {}, InvalidDataError,
                    "CSV line 9, column 'label' is empty: every row needs its label or target"),
    "nan far": (lambda: csv_with(150_002, "1,nan,1"), {}, InvalidDataError,
                "CSV line 150002, column 'f1' is nan: NaN or Inf cannot train"),
    "infinite target": (lambda: csv_with(4, "1,2,-inf"), {}, InvalidDataError,
                        "CSV line 4, column 'label' is -inf: NaN or Inf cannot train"),
    "ragged": (lambda: csv_with(100_001, "1,2"), {}, InvalidDataError,
               "CSV line 100001 has 2 columns where the header has 3"),
    "too many columns": (lambda: csv_with(5, "1,2,3,4"), {}, InvalidDataError,
                         "CSV line 5 has 4 columns where the header has 3"),
    "rows streamed": (lambda: csv_with(3, "1,2,1", rows=5000), {"max_rows": 4000},
                      InvalidInput, "CSV line 4002 is past the limit max_rows=4000"),
    "bytes streamed": (lambda: csv_with(3, "1,2,1", rows=100_000),
                       {"max_dataset_bytes": 1_000_000}, InvalidInput,
                       "CSV line 62502 takes X past the limit max_dataset_bytes=1000000"),
    "features": (lambda: as_csv(np.ones((3, 6)), np.arange(3)), {"max_features": 5},
                 InvalidInput, "X has 6 features, more than the limit max_features=5"),
    "header only": (lambda: b"f0,f1,label\n", {}, InvalidDataError,
                    "the CSV has a header and no data rows"),
    "empty": (lambda: b"", {}, InvalidDataError, "the file is empty"),
    "too many classes": (lambda: as_csv(np.ones((70_000, 1)),
                                        np.char.add("w", np.arange(70_000).astype(str))),
                         {}, InvalidDataError, "y holds more than 65536 distinct class labels"),
    "no target": (lambda: csv_with(3, "1,2,1"), {"target": "colour"}, InvalidInput,
                  "target 'colour' is not a column of the header (f0, f1, label)"),
}


def refused(ingester: Ingester, upload: Upload, settings: dict[str, Any],
            error: type[Exception], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    body, fmt, target = upload
    if settings.pop("no_pyarrow", False):
        without_pyarrow(monkeypatch)
    target = settings.pop("target", target)
    with pytest.raises(error) as raised:
        ingester(body, fmt, target, **settings)
    assert str(raised.value).startswith(message)
    assert isinstance(raised.value, InvalidDataError | ServiceError)  # a 4xx, never a 500
    assert ingester.left() == [] and ingester.datasets() == 0


@pytest.mark.parametrize("case", CASES)
def test_a_bad_upload_is_refused_and_leaves_nothing(
        case: str, ingester: Ingester, monkeypatch: pytest.MonkeyPatch) -> None:
    make, settings, error, message = CASES[case]
    refused(ingester, make(), dict(settings), error, message, monkeypatch)


@pytest.mark.parametrize("parser", ["arrow", "text"])
@pytest.mark.parametrize("case", CSV_CASES)
def test_a_bad_csv_is_refused_alike_by_both_parsers(
        case: str, parser: str, ingester: Ingester, monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "text":
        without_pyarrow(monkeypatch)
    make, settings, error, message = CSV_CASES[case]
    refused(ingester, (make(), "csv", "label"), dict(settings), error, message, monkeypatch)


@pytest.mark.parametrize("store", ["local"], indirect=True)  # refused before the store
@pytest.mark.parametrize("parser", ["arrow", "text"])
def test_a_ragged_row_at_row_two_million(parser: str, ingester: Ingester, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Written and read streaming (20 MB): the error names the line, the spool is gone."""
    if parser == "text":
        without_pyarrow(monkeypatch)
    path = tmp_path / "ragged.csv"
    with path.open("wb") as file:
        file.write(b"a,b,label\n")
        for _ in range(20):
            file.write(b"0.5,1.5,1\n" * 99_999 + b"0.5,1.5,0\n")
        file.seek(10 + 1_999_999 * 10)  # the 2,000,000th data row loses a value
        file.write(b"0.5,    1\n")
        file.seek(0, io.SEEK_END)
        file.write(b"0.5,1.5,0\n" * 10)
    with path.open("rb") as source, pytest.raises(InvalidDataError) as raised:
        ingester(source, "csv", "label")
    assert str(raised.value) == "CSV line 2000001 has 2 columns where the header has 3"
    assert ingester.left() == [] and ingester.datasets() == 0


def test_a_failure_while_the_rows_are_written_leaves_nothing(
        ingester: Ingester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store fails in pass 2, with X.bin's writes under way (on S3, a multipart upload
    with parts sent): they are undone."""
    calls, in_flight = {"n": 0}, []
    append = RowsWriter.append

    def failing(self: RowsWriter, X: np.ndarray, y: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 200:  # of 256 buckets, about 10 MB of X.bin written
            in_flight.extend(leftovers(ingester.store))
            raise OSError("the store went away")
        append(self, X, y)

    monkeypatch.setattr(RowsWriter, "append", failing)
    with pytest.raises(OSError, match="the store went away"):
        ingester(as_npz(rng.normal(size=(400_000, 4)), np.arange(400_000) % 2), "npz")
    assert in_flight and ingester.left() == [] and ingester.datasets() == 0
