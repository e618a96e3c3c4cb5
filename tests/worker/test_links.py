"""A rank's TCP link: length-framed payloads, whether they come at once or after a while, and
exchanged both ways at once."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from worker.links import POLL_S, LinkClosed, SocketLink


def _pair(timeout: float = 5.0) -> tuple[SocketLink, SocketLink]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        left = socket.create_connection(server.getsockname())
        right, _ = server.accept()
    return SocketLink(left, timeout), SocketLink(right, timeout)


def test_payloads_arrive_whole_whether_they_come_during_the_poll_or_after_it() -> None:
    sender, receiver = _pair()
    try:
        sender.send([b"head", memoryview(b"-body")])
        assert bytes(receiver.receive(1.0)) == b"head-body"  # already there

        late = threading.Timer(POLL_S * 5, sender.send, args=([b"x" * 300_000],))
        late.start()
        started = time.perf_counter()
        assert bytes(receiver.receive(2.0)) == b"x" * 300_000  # after the poll: blocking
        assert time.perf_counter() - started >= POLL_S * 4
        late.join()
    finally:
        sender.close()
        receiver.close()


def test_parts_of_any_item_size_are_framed_by_their_bytes() -> None:
    sender, receiver = _pair()
    vector = np.arange(100_000, dtype=np.float32)
    try:
        sender.send([b"h", vector.data])  # a float32 view: 4 bytes an item
        got = receiver.receive(1.0)
        assert bytes(got[:1]) == b"h"
        assert np.array_equal(np.frombuffer(got[1:], np.float32), vector)
    finally:
        sender.close()
        receiver.close()


def test_a_closed_or_silent_peer_ends_the_link() -> None:
    sender, receiver = _pair()
    try:
        with pytest.raises(LinkClosed):
            receiver.receive(0.05)  # silent past the timeout
        sender.close()
        with pytest.raises(LinkClosed, match="closed"):
            receiver.receive(1.0)
    finally:
        receiver.close()


def test_two_sides_exchanging_at_once_never_wait_for_each_other_to_read() -> None:
    # 24 MB each way, far past what loopback sockets buffer (about 4 MB): two sides that each
    # sent whole before reading would both block in their sends.
    left, right = _pair()
    size = 6_000_000
    sent = {side: np.full(size, value, dtype=np.float32)
            for side, value in (("left", 1.0), ("right", 2.0))}
    got: dict[str, np.ndarray] = {}

    def run(name: str, link: SocketLink) -> None:
        got[name] = np.frombuffer(link.exchange([b"v", sent[name].data], 10.0)[1:],
                                  np.float32).copy()

    try:
        threads = [threading.Thread(target=run, args=("left", left)),
                   threading.Thread(target=run, args=("right", right))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert np.array_equal(got["left"], sent["right"])
        assert np.array_equal(got["right"], sent["left"])
    finally:
        left.close()
        right.close()


def test_a_send_that_nobody_reads_ends_the_link_after_its_timeout() -> None:
    sender, receiver = _pair(timeout=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(LinkClosed):
            sender.send([b"x" * 50_000_000])  # more than the sockets buffer; never read
        assert 0.2 <= time.monotonic() - started < 5
    finally:
        sender.close()
        receiver.close()
