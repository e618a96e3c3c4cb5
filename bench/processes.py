"""Child processes of the end-to-end tests: started, watched and stopped, all by pid.

Each process starts in a session of its own, so it leads a process group whose id is its pid.
Stopping sends SIGTERM to every pid, SIGKILL to those still running after a bound, and then
SIGKILL to each group, so that children left behind (Celery's pool processes) die too. A
process is reaped only after that: until then its exited pid cannot be reused, so the group id
still names only its own processes. Output goes to a log file per process (a pipe that nobody
reads could fill and block it); failure messages carry the tail of those files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

TERM_GRACE_S = 10.0
KILL_GRACE_S = 5.0
POLL_S = 0.05
TAIL_CHARS = 4000


class Process:
    """One started program and its log file."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path,
                 log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(self.argv, env=dict(env), cwd=cwd,
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_status(self) -> str | None:
        """How the process ended, or None while it runs; it is not reaped here."""
        if self.popen.returncode is not None:
            return f"exited with {self.popen.returncode}"
        try:
            ended = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return "reaped"
        if ended is None or ended.si_pid == 0:
            return None
        if ended.si_code == os.CLD_EXITED:
            return f"exited with {ended.si_status}"
        return f"killed by signal {ended.si_status}"

    def alive(self) -> bool:
        return self.exit_status() is None

    def wait_exit(self, timeout: float) -> bool:
        """Whether the process ends within ``timeout`` s (it is not reaped here)."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
        return True

    def tail(self, chars: int = TAIL_CHARS) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return text[-chars:]

    def describe(self) -> str:
        state = self.exit_status() or "running"
        return f"--- {self.name} (pid {self.pid}, {state}), {self.log_path}:\n{self.tail()}"

    def signal(self, signum: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill_group_and_reap(self) -> None:
        """SIGKILL to the process group (the process has exited or been killed: this is for
        what it left), then reap the process."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(KILL_GRACE_S)


class Processes:
    """Every process a fixture started, to be stopped together by ``stop_all``."""

    def __init__(self, cwd: Path, log_dir: Path) -> None:
        self.cwd, self.log_dir = cwd, log_dir
        self.started: list[Process] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Process:
        process = Process(name, argv, env, self.cwd, self.log_dir)
        self.started.append(process)
        return process

    def run(self, name: str, argv: Sequence[str], env: Mapping[str, str],
            timeout: float) -> Process:
        """Start ``argv`` and wait for it to exit with 0 within ``timeout`` s."""
        process = self.start(name, argv, env)
        ended = process.wait_exit(timeout)
        assert ended, f"{name} still runs after {timeout} s\n{process.describe()}"
        assert process.exit_status() == "exited with 0", process.describe()
        return process

    def describe(self) -> str:
        return "\n".join(process.describe() for process in self.started)

    def stop_all(self, grace: float = TERM_GRACE_S) -> None:
        """SIGTERM to every process at once; SIGKILL to those still running ``grace`` s
        later; then SIGKILL to every process group, and reap. Never raises: it runs in
        teardowns, which must go on."""
        for process in self.started:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.started:
            if not process.wait_exit(max(0.0, deadline - time.monotonic())):
                process.signal(signal.SIGKILL)
                process.wait_exit(KILL_GRACE_S)
        for process in self.started:
            process.kill_group_and_reap()


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, *,
               interval: float = 0.2, context: Callable[[], str] | None = None) -> T:
    """The first truthy result of ``probe``, polled for at most ``timeout`` s.

    An exception from ``probe`` counts as "not yet" (a server still starting refuses
    connections), except a failed assertion, which fails at once; the last one is in the
    failure message, with ``context()``.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = probe()
        except AssertionError:
            raise
        except Exception as error:
            result, last = None, error
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last!r})" if last is not None else ""
            extra = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}{extra}")
        time.sleep(interval)
