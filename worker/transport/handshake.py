"""How a rank's link to its leader is made.

1. The leader listens on a TCP port at its address on the route to Redis, and sends each
   rank, in its ASSIGN through the join plane, a ``Ticket``: that address and a one-time
   secret.
2. The rank connects and says ``Hello``: its rank and the secret. Anyone else is refused.
3. The leader offers shared slots (``SlotOffer``; one without a path offers none), and the
   rank answers whether it could map them (``SlotAnswer``): it can on the leader's host only.

Each of these is a small typed message, sent as JSON; one that does not parse as its type
ends the handshake (``HandshakeError``).
"""

from __future__ import annotations

import hmac
import json
import secrets
import socket
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, get_type_hints
from urllib.parse import urlsplit

from worker.transport.links import LinkClosed, SocketLink
from worker.transport.slots import SlotOffer, accept_offer, make_offer


class HandshakeError(ValueError):
    """A handshake message that is not what its step expects."""


@dataclass(frozen=True)
class Ticket:
    """Where a rank connects to its leader, and the secret it shows there."""

    address: str  # host:port
    secret: str


@dataclass(frozen=True)
class Hello:
    """A rank's first message on its link."""

    rank: int
    secret: str


@dataclass(frozen=True)
class SlotAnswer:
    """Whether the rank mapped the slots offered (it runs on the leader's host)."""

    mapped: bool


Handshake = Ticket | Hello | SlotOffer | SlotAnswer
H = TypeVar("H", Ticket, Hello, SlotOffer, SlotAnswer)


def encode_handshake(message: Handshake) -> bytes:
    return json.dumps(asdict(message)).encode()


def decode_handshake(kind: type[H], payload: bytes | memoryview | str) -> H:
    """The message of type ``kind`` in ``payload``; raises HandshakeError for anything
    else (other fields, or a field of another type)."""
    try:
        values: Any = json.loads(bytes(payload) if not isinstance(payload, str) else payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HandshakeError(f"not a {kind.__name__}: {exc}") from exc
    types = get_type_hints(kind)
    if not (isinstance(values, dict) and set(values) == {f.name for f in fields(kind)}
            and all(isinstance(values[name], types[name]) for name in values)):
        raise HandshakeError(f"not a {kind.__name__}: {values!r}")
    return kind(**values)


def local_address(redis_url: str) -> str:
    """This host's address on the route to Redis: one that the other workers, which reach
    the same Redis, can reach too (a container's own address in compose, 127.0.0.1 here)."""
    parts = urlsplit(redis_url)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((parts.hostname or "127.0.0.1", parts.port or 6379))
        return str(probe.getsockname()[0])


class Listener:
    """The leader's side: a socket at ``host`` whose ``ticket`` its ranks are sent, and the
    offer of shared slots of ``slot_bytes`` in ``shared_dir`` (None: none)."""

    def __init__(self, host: str, shared_dir: Path | None = None, slot_bytes: int = 0) -> None:
        self._sock = socket.create_server((host, 0))
        self.ticket = Ticket(f"{host}:{self._sock.getsockname()[1]}", secrets.token_hex(16))
        self._shared_dir, self._slot_bytes = shared_dir, slot_bytes

    def accept(self, ranks: set[int], timeout: float) -> dict[int, SocketLink]:
        """Links to those of ``ranks`` that connect and say hello within ``timeout`` s."""
        links: dict[int, SocketLink] = {}
        self._sock.settimeout(timeout)
        while len(links) < len(ranks):
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                break
            link = SocketLink(conn, timeout)
            try:
                hello = decode_handshake(Hello, link.receive(timeout))
                if not (hmac.compare_digest(hello.secret, self.ticket.secret)
                        and hello.rank in ranks):
                    raise HandshakeError("not one of this leader's ranks")
                self._offer_slots(link, timeout)
            except (LinkClosed, HandshakeError):
                link.close()
                continue
            links[hello.rank] = link
        return links

    def _offer_slots(self, link: SocketLink, timeout: float) -> None:
        offer = make_offer(self._shared_dir, self._slot_bytes)
        try:
            link.send([encode_handshake(offer.message if offer else SlotOffer())])
            if (offer is not None
                    and decode_handshake(SlotAnswer, link.receive(timeout)).mapped):
                link.share(offer.accepted())
        finally:
            if offer is not None:
                offer.withdraw()

    def close(self) -> None:
        self._sock.close()


def connect(ticket: Ticket, rank: int, timeout: float) -> SocketLink:
    """The rank's side: its link to the leader of ``ticket``, through shared slots when it
    can map them. Raises OSError when the leader cannot be reached or ends the handshake."""
    host, port = ticket.address.rsplit(":", 1)
    link = SocketLink(socket.create_connection((host, int(port)), timeout=timeout), timeout)
    try:
        link.send([encode_handshake(Hello(rank, ticket.secret))])
        offer = decode_handshake(SlotOffer, link.receive(timeout))
        if offer.path is not None:
            slots = accept_offer(offer)
            link.send([encode_handshake(SlotAnswer(mapped=slots is not None))])
            if slots is not None:
                link.share(slots)
    except (LinkClosed, HandshakeError) as exc:
        link.close()
        raise OSError(f"the leader at {ticket.address} ended the handshake: {exc}") from exc
    return link
