"""How the body of a PATCH is stored: cut into parts of a multipart upload as it arrives,
whatever its size, with what is left at its end kept as a tail blob.

Layout (``db.queries.uploads``): the parts go to a multipart upload of ``uploads/<id>/data``;
a tail of fewer bytes than a part (S3 refuses parts under 5 MiB but the last) is the blob
``uploads/<id>/tail-<parts>``, read back by the next PATCH, as tusd's S3 store does. The
offset a PATCH reports is what is durable: the parts plus the tail. When the last byte comes,
the last part (which may be small) is sent and the multipart upload completed into
``uploads/<id>/data``; a file smaller than a part is one PUT.

Memory: a writer holds at most one part and one received chunk (plus the store's copy of
the part it sends), whatever the size of the body or of the file.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

import anyio
from anyio import to_thread

from api.admission import DatabaseGate
from api.services.errors import Conflict
from db.blobs import BlobNotFound, BlobStore
from db.queries.uploads import (
    WRITER_BEAT_S,
    Received,
    complete_received,
    data_key,
    save_received,
    tail_key,
    upload_prefix,
)

log = logging.getLogger(__name__)


class PastLength(Exception):
    """The body goes past the upload's length (what came before it is kept)."""

    def __init__(self, length: int) -> None:
        super().__init__(f"the body goes past Upload-Length {length}")


class Ledger(Protocol):
    """Where a writer records what it stored, under its lease."""

    async def save(self, received: Received, *, hold: bool) -> bool:
        """Record ``received``; ``hold``: the writer goes on. False: the lease is lost."""

    async def complete(self, received: Received) -> bool:
        """Record that every byte is stored. False: the lease is lost."""


class GateLedger:
    """The records of the writer of ``attempt``, each in a slot of the gate."""

    def __init__(self, gate: DatabaseGate, attempt: int, expiry_s: float) -> None:
        self.gate, self.attempt, self.expiry_s = gate, attempt, expiry_s

    async def save(self, received: Received, *, hold: bool) -> bool:
        return await self.gate.run(lambda session: save_received(
            session, received, attempt=self.attempt, hold=hold, expiry_s=self.expiry_s))

    async def complete(self, received: Received) -> bool:
        return await self.gate.run(lambda session: complete_received(
            session, received, attempt=self.attempt))


def lease_lost() -> Conflict:
    return Conflict("another request took this upload over; ask its offset again (HEAD)")


class PartWriter:
    """Stores one PATCH body from ``received.offset`` on, in parts of ``part_size``."""

    def __init__(self, store: BlobStore, received: Received, *, part_size: int,
                 ledger: Ledger) -> None:
        self.store, self.received, self.part_size, self.ledger = (
            store, received, part_size, ledger)
        self._last_record = time.monotonic()

    async def receive(self, body: AsyncIterator[bytes]) -> bool:
        """Store ``body``; True when it brought the last byte of the upload. A body cut short
        is stored as far as it came. Raises ``PastLength`` (what came before it is kept), or
        ``Conflict`` when another writer took over (then nothing more is written).
        """
        received = self.received
        too_long: PastLength | None = None
        try:
            buffer = bytearray(await self._read_tail())
            base = received.offset - len(buffer)  # where the buffer starts: the parts' end
            async for chunk in body:
                if base + len(buffer) + len(chunk) > received.length:
                    too_long = PastLength(received.length)
                    break
                buffer += chunk
                while len(buffer) >= self.part_size:
                    await self._send_part(buffer)
                    base += self.part_size
                if time.monotonic() - self._last_record > WRITER_BEAT_S:
                    await self._record(hold=True)  # a heartbeat
            if base + len(buffer) == received.length and too_long is None:
                await self._finish(buffer)
                return True
            if base + len(buffer) > received.offset:
                await self._keep_tail(buffer, base)
            else:
                await self._record(hold=False)
        except BaseException:
            # The lease goes with what is durable (``received`` counts nothing else), also
            # when the request is cancelled.
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.ledger.save(received, hold=False)
            raise
        if too_long is not None:
            raise too_long
        return False

    async def _record(self, *, hold: bool) -> None:
        if not await self.ledger.save(self.received, hold=hold):
            raise lease_lost()
        self._last_record = time.monotonic()

    async def _read_tail(self) -> bytes:
        received = self.received
        if not received.tail_bytes:
            return b""
        key = tail_key(received.upload_id, len(received.parts))
        try:
            # Only the bytes the row counts: a request that died between writing a longer
            # tail and recording it left more, which its client sends again.
            tail = await to_thread.run_sync(self.store.get_range, key, 0, received.tail_bytes)
        except BlobNotFound:
            tail = b""
        if len(tail) == received.tail_bytes:
            return tail
        log.warning("upload %s: its tail blob holds %d of %d bytes; back to the end of its "
                    "parts", received.upload_id, len(tail), received.tail_bytes)
        received.offset -= received.tail_bytes
        received.tail_bytes = 0
        await self._record(hold=False)
        raise Conflict(f"the last {len(tail)} bytes stored were lost; send again from offset "
                       f"{received.offset}")

    async def _send_part(self, buffer: bytearray) -> None:
        received = self.received
        key = data_key(received.upload_id)
        if received.multipart_id is None:
            received.multipart_id = await to_thread.run_sync(self.store.start_multipart, key)
        # Still ours (and the multipart id recorded, so that termination or expiry can abort
        # it): a writer that lost its lease must not replace a part the new one sent.
        await self._record(hold=True)
        old_tail = tail_key(received.upload_id, len(received.parts))
        number = len(received.parts) + 1
        with memoryview(buffer) as view, view[:self.part_size] as part:
            tag = await to_thread.run_sync(self.store.put_part, key, received.multipart_id,
                                           number, part)
        del buffer[:self.part_size]
        received.parts.append([number, tag])
        received.offset, received.tail_bytes, had_tail = (
            number * self.part_size, 0, received.tail_bytes > 0)
        await self._record(hold=True)
        if had_tail:
            await to_thread.run_sync(self.store.delete, old_tail)

    async def _keep_tail(self, buffer: bytearray, base: int) -> None:
        received = self.received
        await self._record(hold=True)  # still ours: no other writer's tail is overwritten
        await to_thread.run_sync(self.store.put, tail_key(received.upload_id,
                                                          len(received.parts)), buffer)
        received.offset, received.tail_bytes = base + len(buffer), len(buffer)
        await self._record(hold=False)

    async def _finish(self, last: bytearray) -> None:
        received = self.received
        await to_thread.run_sync(self._assemble, last)
        received.offset, received.tail_bytes = received.length, 0
        if not await self.ledger.complete(received):
            raise lease_lost()
        for key in await to_thread.run_sync(
                lambda: list(self.store.keys(upload_prefix(received.upload_id) + "tail-"))):
            await to_thread.run_sync(self.store.delete, key)

    def _assemble(self, last: bytearray) -> None:
        received, store = self.received, self.store
        key = data_key(received.upload_id)
        if received.multipart_id is None:  # smaller than a part: one PUT
            store.put(key, last)
            return
        try:
            if last:
                number = len(received.parts) + 1
                received.parts.append([number, store.put_part(key, received.multipart_id,
                                                              number, last)])
            store.complete_multipart(key, received.multipart_id,
                                     [(number, tag) for number, tag in received.parts])
        except BlobNotFound:
            # An earlier request completed it, then died before recording so.
            if not (store.exists(key) and store.size(key) == received.length):
                raise
