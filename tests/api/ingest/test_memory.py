"""An ingest's memory stays flat whatever the upload's size: a CSV of 3 million rows, whose X
alone decodes to 192 MB, grows a fresh process's peak RSS by much less than that."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

PEAK_GROWTH_MIB = 150
"""pyarrow's read-ahead (about 55 MiB at 1 MiB blocks), the spool's buffers (16 MiB), a
batch, a bucket (1/256 of the rows) and a part per blob writer; measured 110-125 MiB."""

CHILD = textwrap.dedent("""
    import json, sys, time
    import pyarrow.csv  # imported before the baseline: its import is not the ingest's
    from api.services.ingest import ingest
    from db.blobs.local import LocalBlobStore
    from db.settings import Settings

    def peak_mib():
        with open("/proc/self/status") as status:
            line = next(l for l in status if l.startswith("VmHWM"))
        return int(line.split()[1]) / 1024

    root = sys.argv[2]
    settings = Settings(data_dir=root, ingest_tmp_dir=root)
    before, started = peak_mib(), time.perf_counter()
    with open(sys.argv[1], "rb") as source:
        facts, _ = ingest(source, fmt="csv", target="label",
                          store=LocalBlobStore(root + "/blobs", fsync=False),
                          settings=settings, known=lambda sha256: None,
                          record=lambda dataset_id, facts: (facts, True))
    print(json.dumps({"rows": facts.n_rows, "seconds": time.perf_counter() - started,
                      "before": before, "peak": peak_mib()}))
""")


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000,000 rows of 8 features and a label (about 190 MB), written a block at a time."""
    rng = np.random.default_rng(11)
    block = io.StringIO()
    np.savetxt(block, np.column_stack([rng.integers(0, 10**6, size=(100_000, 8)) / 64,
                                       rng.integers(0, 10, size=100_000)]),
               fmt=["%g"] * 8 + ["%d"], delimiter=",")
    path = tmp_path_factory.mktemp("big") / "big.csv"
    with path.open("w") as file:
        file.write(",".join([f"f{i}" for i in range(8)] + ["label"]) + "\n")
        for _ in range(30):
            file.write(block.getvalue())
    return path


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM of /proc")
def test_ingesting_3_million_csv_rows_keeps_memory_flat(
        big_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = subprocess.run([sys.executable, "-c", CHILD, str(big_csv), str(tmp_path)],
                            capture_output=True, text=True, check=True, timeout=240)
    figures = json.loads(result.stdout)
    growth = figures["peak"] - figures["before"]
    size_mb = big_csv.stat().st_size / 1e6
    with capsys.disabled():
        print(f"\n{size_mb:.0f} MB CSV, {figures['rows']} rows: {figures['seconds']:.1f} s "
              f"({size_mb / figures['seconds']:.0f} MB/s), peak RSS +{growth:.0f} MiB")
    assert figures["rows"] == 3_000_000
    assert growth < PEAK_GROWTH_MIB, f"peak RSS grew by {growth:.0f} MiB"
    assert list(tmp_path.iterdir()) == [tmp_path / "blobs"]  # no spool file left
