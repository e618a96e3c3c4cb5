"""A rank's TCP link: length-framed payloads, whether they come at once or after a while, and
exchanged both ways at once; through shared slots when both ends are on one host."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from worker.transport import handshake
from worker.transport.handshake import Listener, connect
from worker.transport.links import POLL_S, LinkClosed, SocketLink
from worker.transport.slots import SharedSlots


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


def _linked(tmp_path: Path, slot_bytes: int = 1 << 16,
            shared_dir: Path | None = None) -> tuple[SocketLink, SocketLink]:
    """A leader's and a rank's link through ``Listener`` and ``connect``: shared slots in
    ``shared_dir`` (``tmp_path`` unless told) when the rank can map them."""
    listener = Listener("127.0.0.1", tmp_path if shared_dir is None else shared_dir,
                        slot_bytes)
    rank: list[SocketLink] = []
    thread = threading.Thread(
        target=lambda: rank.append(connect(listener.ticket, 1, 5.0)))
    thread.start()
    try:
        leader = listener.accept({1}, 5.0)[1]
    finally:
        thread.join(5)
        listener.close()
    return leader, rank[0]


def test_a_rank_on_the_leaders_host_gets_its_payloads_through_shared_slots(
        tmp_path: Path) -> None:
    leader, rank = _linked(tmp_path)
    try:
        assert leader.shared and rank.shared
        assert list(tmp_path.iterdir()) == []  # named only until the rank had mapped it
        vector = np.arange(1000, dtype=np.float32)
        for step in range(5):  # both ways at once, the slots in turn
            got: dict[str, bytes] = {}

            def answer(got: dict[str, bytes] = got, step: int = step) -> None:
                got["rank"] = bytes(rank.exchange([b"r", (vector + step).data], 5.0))

            thread = threading.Thread(target=answer)
            thread.start()
            got["leader"] = bytes(leader.exchange([b"l", (vector - step).data], 5.0))
            thread.join(5)
            assert got["leader"] == b"r" + (vector + step).tobytes()
            assert got["rank"] == b"l" + (vector - step).tobytes()
        big = np.arange(100_000, dtype=np.float32)  # past the slot: inline
        leader.send([big.data])
        assert np.array_equal(np.frombuffer(rank.receive(1.0), np.float32), big)
    finally:
        leader.close()
        rank.close()


def test_a_slot_is_not_written_again_while_its_payload_may_be_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_slots: list[bytes] = []
    write = SharedSlots.write

    def seen(self: SharedSlots, index: int, parts: list[memoryview]) -> int:
        in_slots.append(b"".join(parts))
        return write(self, index, parts)

    monkeypatch.setattr(SharedSlots, "write", seen)
    leader, rank = _linked(tmp_path)
    try:
        leader.send([b"first"])
        first = rank.receive(1.0)  # a view of slot 0, valid until the rank's next call
        leader.send([b"second"])  # slot 1
        leader.send([b"third"])  # slot 0 is still the rank's: inline
        assert bytes(first) == b"first"
        assert bytes(rank.receive(1.0)) == b"second"
        assert bytes(rank.receive(1.0)) == b"third"
        rank.send([b"done"])  # says the rank is done with both slots
        assert bytes(leader.receive(1.0)) == b"done"
        leader.send([b"fourth"])
        leader.send([b"fifth"])
        assert bytes(rank.receive(1.0)) == b"fourth"
        assert bytes(rank.receive(1.0)) == b"fifth"
        assert in_slots == [b"first", b"second", b"done", b"fourth", b"fifth"]
    finally:
        leader.close()
        rank.close()


def test_without_shared_memory_the_link_stays_tcp(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # A rank on another host (or container) cannot map the leader's segment.
    monkeypatch.setattr(handshake, "accept_offer", lambda offer: None)
    cases = [_linked(tmp_path)]
    monkeypatch.undo()
    monkeypatch.setattr(os, "posix_fallocate", refuse)  # a full tmpfs
    cases.append(_linked(tmp_path))
    monkeypatch.undo()
    cases.append(_linked(tmp_path, shared_dir=tmp_path / "missing"))
    for leader, rank in cases:
        try:
            assert not leader.shared and not rank.shared
            leader.send([b"still", b" works"])
            assert bytes(rank.receive(1.0)) == b"still works"
        finally:
            leader.close()
            rank.close()
    assert list(tmp_path.iterdir()) == []
