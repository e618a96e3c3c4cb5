"""A job's loss history as clients read it: downsampled, or whole as a stream.

No read holds the history in memory: ``downsampled`` keeps at most ``max_points`` rows while
it streams the rest past, and the whole history is sent page by page (``history_json``,
``history_csv``), each page read in a short slot of the database gate, so a slow client holds
no connection.

The downsampling rule: the first and the last row are kept; the rows between are cut into
``(max_points - 2) // 2`` buckets of equal length by position, and each bucket keeps the row
of its lowest and of its highest ``train_loss`` (the first such row on a tie; rows without a
value are skipped), so a spike or a dip survives, unlike with every-k-th sampling.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from functools import partial

import anyio
import numpy as np
from sqlalchemy.orm import Session

from api.admission import DatabaseGate, Overloaded
from db.queries.metrics import (
    MetricColumns,
    MetricRow,
    history_extent,
    read_metric_page,
    stream_metric_rows,
)

PAGE_ROWS = 10_000
"""Rows of one page of a streamed history."""
PAGE_PATIENCE_S = 30.0
"""How long a stream already under way waits for a database slot before it gives up."""
SPOOL_BYTES = 1 << 20
"""What a column of a streamed history holds in memory before it spills to a file."""
COLUMNS = ("step", "epoch", "train_loss", "val_loss", "val_accuracy")


class Downsampler:
    """The rule of the module doc, fed the rows of a history of ``n`` rows in step order, a
    page at a time: it keeps at most ``max_points`` of them, whatever ``n`` is."""

    def __init__(self, n: int, max_points: int) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {max_points}")
        self._n, self._fed = n, 0
        self._all = n <= max_points
        # Bucket k holds the positions edges[k] <= i < edges[k + 1].
        self._edges = np.linspace(1, n - 1, (max_points - 2) // 2 + 1).astype(np.int64)
        self._kept: dict[int, MetricRow] = {}
        self._extremes: dict[tuple[int, bool], tuple[float, int, MetricRow]] = {}
        self._last: tuple[int, MetricRow] | None = None

    def feed(self, rows: Sequence[MetricRow]) -> None:
        """The next rows of the history."""
        start, self._fed = self._fed, self._fed + len(rows)
        if not rows:
            return
        self._last = (start + len(rows) - 1, rows[-1])  # kept in the end, whatever it is
        if self._all:
            self._kept.update(enumerate(rows, start))
            return
        if start == 0:
            self._kept[0] = rows[0]
        positions = np.arange(start, start + len(rows))
        buckets = np.searchsorted(self._edges, positions, side="right") - 1
        inner = (positions >= 1) & (positions < self._n - 1) & (buckets < len(self._edges) - 1)
        if not inner.any():
            return
        loss = np.array([np.nan if row[2] is None else row[2] for row in rows], np.float64)
        offsets = np.flatnonzero(inner)
        # Runs of one bucket within the page: a bucket's extremes over its runs in order.
        cuts = np.flatnonzero(np.diff(buckets[offsets])) + 1
        for run in np.split(offsets, cuts):
            values = loss[run]
            if np.isnan(values).all():
                continue
            bucket = int(buckets[run[0]])
            for lowest, at in ((True, np.nanargmin(values)), (False, np.nanargmax(values))):
                offset = int(run[at])
                value, best = float(loss[offset]), self._extremes.get((bucket, lowest))
                # Strictly better only: on a tie the earlier row stays, as argmin keeps it.
                if best is None or (value < best[0] if lowest else value > best[0]):
                    self._extremes[bucket, lowest] = (value, start + offset, rows[offset])

    def result(self) -> MetricColumns:
        """The kept rows as columns, in step order."""
        kept = dict(self._kept)
        kept.update({i: row for _, i, row in self._extremes.values()})
        if self._last is not None:
            kept[min(self._last[0], self._n - 1)] = self._last[1]
        return to_columns(kept[i] for i in sorted(kept))


def to_columns(rows: Iterable[MetricRow]) -> MetricColumns:
    columns = MetricColumns(step=[], epoch=[], train_loss=[], val_loss=[], val_accuracy=[])
    lists = [columns[name] for name in COLUMNS]  # type: ignore[literal-required]
    for row in rows:
        for values, value in zip(lists, row, strict=True):
            values.append(value)
    return columns


def downsample(columns: MetricColumns, max_points: int) -> MetricColumns:
    """``columns`` (a history in memory) downsampled by the rule of the module doc."""
    rows = list(zip(*(columns[name] for name in COLUMNS), strict=True))  # type: ignore[literal-required]
    sampler = Downsampler(len(rows), max_points)
    sampler.feed(rows)
    return sampler.result()


def downsampled(session: Session, *, job_id: str, since_step: int | None,
                max_points: int) -> MetricColumns:
    """The history after ``since_step`` downsampled to at most ``max_points`` rows, read in
    one pass that holds one chunk of rows at a time."""
    n, last = history_extent(session, job_id=job_id, after=since_step)
    sampler = Downsampler(n, max_points)
    # Bounded by the last step counted: rows a running job writes meanwhile wait for the next
    # read, so the buckets stay those of the n rows counted.
    for rows in stream_metric_rows(session, job_id=job_id, after=since_step, until=last):
        sampler.feed(rows)
    return sampler.result()


class HistoryPages:
    """The history after ``since_step``, page by page, up to the step that was last when it
    began; each page read in a slot of ``gate`` of its own."""

    def __init__(self, gate: DatabaseGate, job_id: str, since_step: int | None) -> None:
        self._gate, self._job_id, self._after = gate, job_id, since_step
        self._until: int | None = None
        self.first: list[MetricRow] = []

    async def start(self) -> None:
        """Read the bound and the first page (raising ``Overloaded`` before any byte goes
        out, so the client gets a 503 instead of a broken stream)."""
        _, self._until = await self._gate.run(partial(
            history_extent, job_id=self._job_id, after=self._after))
        self.first = await self._page()

    async def _page(self) -> list[MetricRow]:
        if self._until is None or (self._after is not None and self._after >= self._until):
            return []
        rows = await self._gate.run(partial(read_metric_page, job_id=self._job_id,
                                            after=self._after, until=self._until,
                                            limit=PAGE_ROWS))
        if rows:
            self._after = rows[-1][0]
        return rows

    async def __aiter__(self) -> AsyncIterator[list[MetricRow]]:
        page = self.first
        while page:
            yield page
            if len(page) < PAGE_ROWS:
                return
            page = await self._patient_page()

    async def _patient_page(self) -> list[MetricRow]:
        # The response has started: a busy moment delays the stream rather than breaking it.
        with anyio.fail_after(PAGE_PATIENCE_S):
            while True:
                try:
                    return await self._page()
                except Overloaded:
                    await anyio.sleep(0.1)


def _json_values(values: list[object]) -> str:
    """``values`` as the inside of a JSON array."""
    return json.dumps(values, allow_nan=False)[1:-1]


async def history_json(pages: HistoryPages) -> AsyncIterator[bytes]:
    """The columnar JSON object of the history: the steps as they are read, the other
    columns spooled meanwhile (``SPOOL_BYTES`` each in memory, on disk past it), sent after."""
    with contextlib.ExitStack() as stack:
        spools = [stack.enter_context(tempfile.SpooledTemporaryFile(SPOOL_BYTES, mode="w+"))
                  for _ in COLUMNS[1:]]
        yield b'{"step":['
        first = True
        async for page in pages:
            columns = list(zip(*page, strict=True))
            separator = "" if first else ","
            first = False
            yield (separator + _json_values(list(columns[0]))).encode()
            for spool, values in zip(spools, columns[1:], strict=True):
                spool.write(separator + _json_values(list(values)))
        for name, spool in zip(COLUMNS[1:], spools, strict=True):
            yield f'],"{name}":['.encode()
            spool.seek(0)
            while chunk := spool.read(1 << 16):
                yield chunk.encode()
        yield b"]}"


def csv_rows(rows: Iterable[MetricRow]) -> str:
    """Rows of the history as CSV lines; an empty cell where no value was recorded."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(
        ["" if value is None else repr(value) for value in row] for row in rows)
    return out.getvalue()


async def history_csv(pages: HistoryPages) -> AsyncIterator[bytes]:
    """The history as CSV with a header row, one line per recorded step."""
    yield (",".join(COLUMNS) + "\n").encode()
    async for page in pages:
        yield csv_rows(page).encode()
