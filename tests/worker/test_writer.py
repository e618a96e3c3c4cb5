"""The leader's writer: writes in order, one at a time, beside the loop, errors not lost."""

from __future__ import annotations

import threading
import time

import pytest

from worker.writer import Writer


def test_a_write_runs_beside_the_loop_and_the_next_waits_for_it() -> None:
    release = threading.Event()
    order: list[str] = []

    def slow() -> bool:
        assert release.wait(10)
        order.append("slow")
        return False

    def quick() -> bool:
        order.append("quick")
        return True

    with Writer("job") as writer:
        writer.submit(slow)
        writer.poll()  # the write in flight is left running
        assert order == [] and not writer.cancel_requested
        threading.Timer(0.05, release.set).start()
        writer.submit(quick)  # starts once the first has ended
        writer.wait()
    assert order == ["slow", "quick"]
    assert writer.cancel_requested


def test_a_failed_write_is_raised_in_the_loop_once() -> None:
    def failing() -> bool:
        raise RuntimeError("the database went away")

    with Writer("job") as writer:
        writer.submit(failing)
        with pytest.raises(RuntimeError, match="went away"):
            writer.wait()
        writer.wait()  # raised once: nothing is in flight now


def test_leaving_waits_for_the_write_in_flight_even_on_an_error() -> None:
    done = threading.Event()

    def write() -> bool:
        time.sleep(0.05)
        done.set()
        return False

    with pytest.raises(KeyError), Writer("job") as writer:
        writer.submit(write)
        raise KeyError("the loop failed")
    assert done.is_set()
