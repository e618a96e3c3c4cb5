"""How a rank's link is made: typed handshake messages, and strangers refused."""

from __future__ import annotations

import socket
import threading

import pytest

from worker.transport.handshake import (
    HandshakeError,
    Hello,
    Listener,
    SlotAnswer,
    Ticket,
    connect,
    decode_handshake,
    encode_handshake,
)
from worker.transport.links import SocketLink
from worker.transport.slots import SlotOffer


@pytest.mark.parametrize("message", [Ticket("127.0.0.1:5000", "s3cret"), Hello(2, "s3cret"),
                                     SlotOffer(), SlotOffer("/dev/shm/x", 4096, "t0k"),
                                     SlotAnswer(mapped=True)])
def test_each_handshake_message_round_trips(
        message: Ticket | Hello | SlotOffer | SlotAnswer) -> None:
    assert decode_handshake(type(message), encode_handshake(message)) == message


@pytest.mark.parametrize("payload", [b"2:s3cret", b'{"rank": "2", "secret": "s3cret"}',
                                     b'{"rank": 2}', b'{"rank": 2, "secret": "s", "x": 1}',
                                     b"\xff"])
def test_anything_but_the_message_expected_ends_the_handshake(payload: bytes) -> None:
    with pytest.raises(HandshakeError):
        decode_handshake(Hello, payload)


def test_a_stranger_without_the_secret_gets_no_link() -> None:
    listener = Listener("127.0.0.1")
    host, port = listener.ticket.address.rsplit(":", 1)
    stranger = SocketLink(socket.create_connection((host, int(port))), 5.0)
    links: list[dict[int, SocketLink]] = []
    thread = threading.Thread(target=lambda: links.append(listener.accept({1}, 1.0)))
    thread.start()
    try:
        stranger.send([encode_handshake(Hello(1, "guessed"))])
        thread.join(5)
        assert links == [{}]
        # A rank with the ticket is taken.
        thread = threading.Thread(target=lambda: links.append(listener.accept({1}, 5.0)))
        thread.start()
        rank = connect(listener.ticket, 1, 5.0)
        thread.join(5)
        assert set(links[1]) == {1}
        rank.close()
        links[1][1].close()
    finally:
        stranger.close()
        listener.close()
