"""The hand-off between the source thread and the worker: one slot, the newest frame wins."""

from __future__ import annotations

import threading

from igikit.stream.message import Message, wall_clock


class LatestSlot:
    """Holds at most one message; a newer message replaces an unprocessed older one.

    A real-time pipeline must act on the newest image: a queue would make every result later
    than the last, so when processing falls behind the displaced frame is handed back to the
    caller of :meth:`put`, who counts it. For a source that can wait (a fast replay), the producer
    calls :meth:`wait_for_demand` first, so nothing is displaced and a frame is only created when
    the worker is ready for it (its latency then holds no queueing time).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Message | None = None
        self._closed = False
        self._worker_waiting = False
        #: Frames put so far, and the wall-clock time of the latest put (start time before any).
        self.n_put = 0
        self.last_put_s = wall_clock()
        #: When the worker last started waiting for a frame.
        self.waiting_since_s = self.last_put_s

    def put(self, message: Message) -> Message | None:
        """Offer ``message``; return the unprocessed message it displaced, if any."""
        with self._cond:
            displaced, self._item = self._item, message
            self.n_put += 1
            self.last_put_s = wall_clock()
            self._cond.notify_all()
            return displaced

    def take(self, timeout: float | None = None) -> Message | None:
        """The newest message, waiting for one; None when closed and empty, or on timeout."""
        with self._cond:
            self._worker_waiting = True
            self.waiting_since_s = wall_clock()
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            self._worker_waiting = False
            item, self._item = self._item, None
            return item

    def wait_for_demand(self) -> bool:
        """Block until the worker waits on an empty slot; False when the slot was closed."""
        with self._cond:
            self._cond.wait_for(lambda: (self._worker_waiting and self._item is None) or self._closed)
            return not self._closed

    def close(self) -> None:
        """No more frames: wake everyone; :meth:`take` still returns a message left in the slot."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def worker_waiting(self) -> bool:
        """True while the worker waits in :meth:`take`."""
        return self._worker_waiting

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed
