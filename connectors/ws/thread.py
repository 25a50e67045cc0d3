"""Running a :class:`WsClient` in a thread of its own, handing items over a bounded queue.

The dataflow source polls from a synchronous worker; the client needs a running event loop.
:class:`ThreadedFeed` gives the client a loop in a daemon thread and hands items over a
``queue.Queue(maxsize)``.  When the queue is full the client stops reading the socket (it
waits, the loop stays responsive for ping frames and shutdown) so memory stays bounded;
the venue's own buffers then fill, and a venue that gives up on a slow reader disconnects,
which the client reports as a ``disconnect`` gap and repairs like any other.

``stop()`` asks for a clean end: the client closes the socket, flushes its last batch, and
iteration ends after the last item.  ``close()`` stops, waits for the thread and discards
whatever was not taken.  An exception inside the thread (a bug, not bad input: bad input is
dead letters) is re-raised by the next ``get``/``poll``/iteration, never swallowed.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Iterator

from ._pipeline import Item
from .client import WsClient

_END = object()


class ThreadedFeed:
    def __init__(self, client: WsClient, *, maxsize: int = 64, name: str | None = None):
        if maxsize < 1:
            raise ValueError(f"maxsize must be positive (got {maxsize})")
        self.client = client
        self._q: queue.Queue = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._run, name=name or f"ws-{client.venue.lower()}", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._ready = threading.Event()
        self._discard = False
        self._error: BaseException | None = None
        self._ended = False

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - handed to the consumer by _take
            if not (self._discard and isinstance(e, asyncio.CancelledError)):  # close() cancelled it: no error
                self._error = e
        finally:
            self._ready.set()
            self._put_blocking(_END)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._ready.set()
        async for item in self.client:
            await self._put(item)

    async def _put(self, item: Item) -> None:
        # poll rather than block: a blocked loop would miss ping frames and the stop request
        delay = 0.001
        while not self._discard:
            try:
                self._q.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _put_blocking(self, item: object) -> None:
        while True:
            try:
                self._q.put(item, timeout=0.05)
                return
            except queue.Full:
                if self._discard:  # close() drains nothing: make room for the end marker
                    try:
                        self._q.get_nowait()
                    except queue.Empty:
                        pass

    # -- the consumer -------------------------------------------------------------------------
    def start(self) -> "ThreadedFeed":
        self._thread.start()
        self._ready.wait()
        return self

    def _take(self, item: object):
        if item is _END:
            self._ended = True
            try:
                self._q.put_nowait(_END)  # later calls see the end too
            except queue.Full:
                pass
            if self._error is not None:
                raise RuntimeError(f"WebSocket feed {self.client.venue} failed") from self._error
            return None
        return item

    def get(self, timeout: float | None = None) -> Item | None:
        """The next item, or None on timeout or after the end (see :attr:`ended`)."""
        try:
            return self._take(self._q.get(timeout=timeout))
        except queue.Empty:
            return None

    def poll(self, max_items: int = 1_000) -> list[Item]:
        """What is ready now, without waiting."""
        out: list[Item] = []
        while len(out) < max_items:
            try:
                item = self._take(self._q.get_nowait())
            except queue.Empty:
                break
            if item is None:
                break
            out.append(item)
        return out

    @property
    def ended(self) -> bool:
        return self._ended

    def __iter__(self) -> Iterator[Item]:
        while True:
            item = self.get()
            if item is None:
                return
            yield item

    def stop(self) -> None:
        """Ask the client for a clean end; keep consuming until iteration ends."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self.client.stop)
            except RuntimeError:  # the loop closed in between: already over
                pass

    def close(self, timeout: float = 5.0) -> None:
        """Stop, wait for the thread (cancelling the client if it overstays), discard what is left."""
        self._discard = True
        if self._thread.ident is None:  # never started
            return
        self.stop()
        self._thread.join(timeout)
        if self._thread.is_alive() and self._loop is not None and self._task is not None:
            try:
                self._loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:
                pass
            self._thread.join(timeout)

    def __enter__(self) -> "ThreadedFeed":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
