"""An upload followed on stderr: a progress bar on a terminal, a line every few seconds in
a pipe or a log, and a word when it resumed or when the server reads it into a dataset."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from api.client import Transfer

PLAIN_EVERY_S = 5.0
"""How often a line is written when stderr is not a terminal."""
NAME_WIDTH = 18
"""The file name's share of the bar's line, which fits 80 columns."""


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


class UploadDisplay:
    """``on_progress`` for ``Client.upload_dataset``, shown on ``console`` while the block
    runs. Only a resumable upload reports progress; a small file shows nothing."""

    def __init__(self, console: Console, name: str) -> None:
        self.console, self.name = console, name
        self.plain = not console.is_terminal
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.monotonic()
        self._from = 0
        self._last_line = 0.0
        self.shown = False  # whether a resumable upload reported anything
    def __enter__(self) -> UploadDisplay:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop_bar()

    def __call__(self, transfer: Transfer) -> None:
        self.shown = True
        if transfer.resumed_from is not None:
            self._from = transfer.resumed_from
            self.console.print(f"resuming {self.name}: {_mb(transfer.resumed_from)} of "
                               f"{_mb(transfer.total)} were stored already")
        if transfer.stage == "ingesting":
            self._stop_bar()
            self.console.print(f"sent {_mb(transfer.total)}; the service reads it into a "
                               "dataset...")
        elif self.plain:
            self._line(transfer)
        else:
            self._draw(transfer)

    def _draw(self, transfer: Transfer) -> None:
        if self._bar is None:
            name = self.name if len(self.name) <= NAME_WIDTH else \
                self.name[:NAME_WIDTH - 1] + "…"
            self._bar = Progress(TextColumn(name), BarColumn(bar_width=20), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=self.console)
            self._bar.start()
            self._task = self._bar.add_task("upload", total=transfer.total,
                                            completed=transfer.sent)
        assert self._task is not None
        self._bar.update(self._task, completed=transfer.sent)

    def _line(self, transfer: Transfer) -> None:
        now = time.monotonic()
        done = transfer.sent >= transfer.total
        if now - self._last_line < PLAIN_EVERY_S and not done:
            return
        self._last_line = now
        rate = (transfer.sent - self._from) / max(now - self._started, 1e-3)
        self.console.print(f"sent {_mb(transfer.sent)} of {_mb(transfer.total)} "
                           f"({100 * transfer.sent // max(transfer.total, 1)}%), "
                           f"{rate / 1e6:,.1f} MB/s", soft_wrap=True)

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
