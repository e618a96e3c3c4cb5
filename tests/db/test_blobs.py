"""The blob store's contract, on a local directory and on S3 (the session's SeaweedFS)."""

from __future__ import annotations

import io
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.seaweed import SeaweedS3
from db.blobs import MIN_PART, BlobNotFound, BlobStore, InvalidParts
from db.blobs.local import LocalBlobStore
from db.blobs.s3 import s3_client
from tests.utils.blobs import leftovers, s3_store


@pytest.fixture(scope="module")
def client(seaweed: SeaweedS3) -> Any:
    """One client for the module's S3 stores (making one takes about 0.1 s)."""
    return s3_client(endpoint_url=seaweed.endpoint, region="us-east-1",
                     access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    """Each test once per store; S3's keys are left to the session's throwaway server."""
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs", fsync=False)
    else:
        yield s3_store(request.getfixturevalue("client"))


def test_put_get_overwrite_and_empty(store: BlobStore) -> None:
    assert store.put("a/b/c", b"hello") == 5
    assert store.get("a/b/c") == b"hello"
    assert store.size("a/b/c") == 5
    assert store.exists("a/b/c")
    assert not store.exists("a/b")  # a "directory" is no blob
    assert store.put("a/b/c", b"replaced!") == 9
    assert store.get("a/b/c") == b"replaced!"
    assert store.put("empty", b"") == 0
    assert store.get("empty") == b"" and store.size("empty") == 0
    with store.open("a/b/c") as stream:
        assert stream.read(3) == b"rep" and stream.read() == b"laced!"


def test_ranges(store: BlobStore) -> None:
    data = bytes(range(256)) * 40
    store.put("r", data)
    assert store.get_range("r", 0, 10) == data[:10]
    assert store.get_range("r", 1000, 1000) == data[1000:2000]
    assert store.get_range("r", len(data) - 5, 100) == data[-5:]  # cut at the end
    assert store.get_range("r", len(data), 10) == b""  # from the end: nothing
    assert store.get_range("r", len(data) + 100, 10) == b""
    assert store.get_range("r", 3, 0) == b""
    with pytest.raises(ValueError, match="invalid range"):
        store.get_range("r", -1, 5)


def test_missing_keys(store: BlobStore) -> None:
    for call in (lambda: store.get("nope"), lambda: store.size("nope"),
                 lambda: store.get_range("nope", 0, 10), lambda: store.get_range("nope", 0, 0),
                 lambda: store.open("nope"), lambda: store.open_seekable("nope")):
        with pytest.raises(BlobNotFound):
            call()
    assert not store.exists("nope")
    store.delete("nope")  # no error


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../x", "a/../b", ".tmp/x", "a/.hidden",
                                 "sp ace", "a/b/", "é", "x" * 901])
def test_invalid_keys(store: BlobStore, key: str) -> None:
    for call in (lambda: store.put(key, b"x"), lambda: store.get(key),
                 lambda: store.exists(key), lambda: store.start_multipart(key)):
        with pytest.raises(ValueError, match="invalid blob key"):
            call()
    with pytest.raises(ValueError, match="invalid blob key"):
        store.keys(key + "/")


def test_a_streaming_writer_across_parts(store: BlobStore) -> None:
    """Odd-sized chunks over two and a bit minimum parts: a multipart upload on S3."""
    data = os.urandom(2 * MIN_PART + 12345)
    with store.writer("big") as writer:
        for start in range(0, len(data), 777_777):
            writer.write(data[start:start + 777_777])
        assert not store.exists("big")  # nothing visible before the commit
    assert writer.written == len(data) == store.size("big")
    assert store.get("big") == data
    assert store.get_range("big", MIN_PART - 10, 20) == data[MIN_PART - 10:MIN_PART + 10]
    assert store.put("streamed", io.BytesIO(data[:MIN_PART + 1])) == MIN_PART + 1
    assert store.get("streamed") == data[:MIN_PART + 1]
    assert leftovers(store) == []


def test_a_failed_or_aborted_writer_leaves_nothing_and_keeps_the_old_blob(
        store: BlobStore) -> None:
    store.put("kept", b"old")
    with pytest.raises(RuntimeError), store.writer("kept") as writer:
        writer.write(os.urandom(MIN_PART + 10))  # on S3, a part has gone out
        raise RuntimeError("the upload failed half-way")
    assert store.get("kept") == b"old"
    with store.writer("never") as writer:
        writer.write(b"x" * 100)
        writer.abort()
    assert not store.exists("never")
    assert leftovers(store) == []
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")


def test_delete_and_delete_prefix(store: BlobStore) -> None:
    for key in ("d/1/a", "d/1/b", "d/2/a", "d1/x", "e"):
        store.put(key, key.encode())
    assert list(store.keys("d/")) == ["d/1/a", "d/1/b", "d/2/a"]
    assert list(store.keys("d")) == ["d/1/a", "d/1/b", "d/2/a", "d1/x"]  # a string prefix
    assert store.delete_prefix("d/1/") == 2
    assert list(store.keys()) == ["d/2/a", "d1/x", "e"]
    store.delete("e")
    store.delete("e")
    assert list(store.keys()) == ["d/2/a", "d1/x"]
    with pytest.raises(ValueError, match="needs a prefix"):
        store.delete_prefix("")
    # Unfinished uploads under the prefix go too, those elsewhere stay.
    pending = store.start_multipart("d/2/pending")
    store.put_part("d/2/pending", pending, 1, b"x")
    elsewhere = store.start_multipart("f/pending")
    assert store.delete_prefix("d/") == 1
    assert list(store.keys()) == ["d1/x"]
    assert leftovers(store) == ["f/pending"]
    store.abort_multipart("f/pending", elsewhere)
    assert leftovers(store) == []


def test_multipart_with_parts_out_of_order_from_separate_calls(store: BlobStore) -> None:
    """Only the upload id and the tags pass between the calls, as between requests."""
    parts = [os.urandom(MIN_PART), os.urandom(MIN_PART), b"the last part may be small"]
    upload = store.start_multipart("mp")
    tags = {n: store.put_part("mp", upload, n, parts[n - 1]) for n in (3, 1, 2)}
    # A part sent again (a retried request) replaces the first.
    tags[2] = store.put_part("mp", upload, 2, parts[1])
    assert not store.exists("mp")
    store.complete_multipart("mp", upload, sorted(tags.items(), reverse=True))
    assert store.get("mp") == b"".join(parts)
    assert leftovers(store) == []
    with pytest.raises(BlobNotFound):  # completed: the upload is gone
        store.put_part("mp", upload, 4, b"late")

    aborted = store.start_multipart("mp-aborted")
    store.put_part("mp-aborted", aborted, 1, b"x" * 100)
    store.abort_multipart("mp-aborted", aborted)
    store.abort_multipart("mp-aborted", aborted)  # no error
    assert not store.exists("mp-aborted")
    assert leftovers(store) == []


def test_a_small_part_before_the_last_is_refused_at_completion(store: BlobStore) -> None:
    upload = store.start_multipart("small")
    tags = [(n, store.put_part("small", upload, n, b"x" * 1000)) for n in (1, 2)]
    with pytest.raises(InvalidParts):
        store.complete_multipart("small", upload, tags)
    assert not store.exists("small")
    store.abort_multipart("small", upload)
    assert leftovers(store) == []
    with pytest.raises(ValueError, match="part numbers"):
        store.put_part("small", upload, 0, b"x")


def test_np_load_reads_an_npz_through_the_seekable_reader(store: BlobStore) -> None:
    """zipfile finds the directory at the end of the file: by ranges, not the whole blob."""
    X = np.arange(60_000, dtype=np.float32).reshape(-1, 6)
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=np.arange(10_000))
    store.put("data.npz", buffer.getvalue())
    with store.open_seekable("data.npz", buffer_size=64 * 1024) as file:
        with zipfile.ZipFile(file) as archive:
            assert sorted(archive.namelist()) == ["X.npy", "y.npy"]
        file.seek(0)
        with np.load(file) as npz:
            np.testing.assert_array_equal(npz["X"], X)
        file.seek(-10, io.SEEK_END)
        assert file.read() == buffer.getvalue()[-10:]


def test_pyarrow_reads_parquet_and_csv_from_the_store(store: BlobStore) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv
    import pyarrow.parquet

    table = pa.table({"a": np.arange(1000), "b": np.linspace(0, 1, 1000)})
    sink = io.BytesIO()
    pyarrow.parquet.write_table(table, sink)
    store.put("t.parquet", sink.getvalue())
    with store.open_seekable("t.parquet") as file:  # its footer is at the end
        assert pyarrow.parquet.ParquetFile(file).read().equals(table)
    store.put("t.csv", b"a,b\n1,2\n3,4\n")
    with store.open("t.csv") as stream:  # read from the start, as a stream
        assert pyarrow.csv.read_csv(stream).to_pydict() == {"a": [1, 3], "b": [2, 4]}


def test_range_reads_from_8_threads_at_once(store: BlobStore) -> None:
    data = os.urandom(1_000_000)
    store.put("shared", data)
    errors: list[BaseException] = []

    def read(i: int) -> None:
        try:
            for j in range(20):
                start = (i * 7919 + j * 104_729) % (len(data) - 5000)
                assert store.get_range("shared", start, 5000) == data[start:start + 5000]
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_the_local_store_syncs_and_keeps_its_own_files_out_of_the_keys(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path, fsync=True)
    store.put("a/b", b"durable")
    upload = store.start_multipart("a/c")
    store.put_part("a/c", upload, 1, b"part")
    assert list(store.keys()) == ["a/b"]
    store.delete("a/b")
    assert not (tmp_path / "a").exists()  # emptied directories go with their last blob


@pytest.mark.services
def test_an_s3_writer_sends_a_blob_of_one_part_in_one_put(client: Any) -> None:
    store = s3_store(client)
    calls: list[str] = []

    def record(event_name: str, **_: Any) -> None:
        calls.append(event_name.rsplit(".", 1)[-1])

    client.meta.events.register("before-call.s3", record)
    try:
        with store.writer("small") as writer:
            writer.write(b"x" * 1000)
        store.put("two-parts", os.urandom(MIN_PART + 1))
    finally:
        client.meta.events.unregister("before-call.s3", record)
    assert calls == ["PutObject", "CreateMultipartUpload", "UploadPart", "UploadPart",
                     "CompleteMultipartUpload"]
