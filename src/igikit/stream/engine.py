"""The runtime: a source thread, a latest-frame-wins slot, a worker, a watchdog, and the clocks.

Threads and why:

* the **source thread** runs :meth:`Source.messages` so that a slow graph never delays frame
  arrival (a scanner does not wait); it puts each frame into a :class:`LatestSlot` and counts the
  frames a newer one displaced;
* the **worker** (the calling thread) takes the newest frame and runs every operator in
  topological order, timing each one and the whole path;
* the **watchdog** (only with a source timeout) emits ``source_lost`` when no frame has arrived
  for the timeout, independently of how long an operator takes, so a hung operator cannot hide
  a lost source.

Before the source thread starts, every operator has been started and then warmed up once on the
source's synthetic frame (:meth:`Operator.warm_up`), so the first real frame does not pay for
first calls and allocations.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from igikit.stream.events import StreamEvent
from igikit.stream.graph import Graph
from igikit.stream.latency import LatencyReport, LatencyStats
from igikit.stream.message import Message, wall_clock
from igikit.stream.operator import Operator
from igikit.stream.slot import LatestSlot
from igikit.stream.source import Source

log = logging.getLogger(__name__)

EventCallback = Callable[[StreamEvent], None]


@dataclass
class _FeedCounts:
    """What the source thread saw; read by the worker only after joining that thread."""

    received: int = 0
    dropped: int = 0
    error: BaseException | None = None


class _Watchdog:
    """Emits ``source_lost`` once per silence longer than the timeout, ``source_restored`` after."""

    def __init__(self, slot: LatestSlot, timeout_s: float, emit: EventCallback, *, pulled: bool) -> None:
        self._slot, self._timeout, self._emit = slot, timeout_s, emit
        # A pulled source only produces when asked: silence counts from the worker's request,
        # not from the last frame, or a slow operator would look like a lost source.
        self._pulled = pulled
        self._lock = threading.Lock()
        self._lost = False
        self._done = threading.Event()
        self.losses = 0
        self._thread = threading.Thread(target=self._watch, name="igikit-stream-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def frame_arrived(self, frame_id: int) -> None:
        """Called by the source thread on every frame: ends a loss."""
        if not self._lost:  # cheap check first: this runs for every frame
            return
        with self._lock:
            if self._lost:
                self._lost = False
                self._emit(StreamEvent("source_restored", wall_clock(), frame_id, "frames arrive again"))

    def _watch(self) -> None:
        while not self._done.is_set():
            since = self._slot.last_put_s
            if self._pulled:
                # Busy worker: nothing was asked for, so nothing is late.
                since = max(since, self._slot.waiting_since_s) if self._slot.worker_waiting else wall_clock()
            silence = wall_clock() - since
            if silence < self._timeout:
                # Sleep exactly until the current silence would reach the timeout; no polling.
                self._done.wait(self._timeout - silence)
                continue
            with self._lock:
                if not self._lost and not self._slot.closed:
                    self._lost = True
                    self.losses += 1
                    last = self._slot.n_put - 1
                    self._emit(
                        StreamEvent(
                            "source_lost",
                            wall_clock(),
                            last,
                            f"no frame for {silence * 1e3:.0f} ms (timeout {self._timeout * 1e3:.0f} ms)",
                        )
                    )
            self._done.wait(self._timeout)


def run_graph(
    graph: Graph,
    *,
    deadline_ms: float | None = None,
    source_timeout_s: float | None = None,
    on_event: EventCallback | None = None,
    log_drops: bool = False,
) -> LatencyReport:
    """Run ``graph`` until its source ends (or an operator fails); return the latency report.

    Parameters
    ----------
    graph
        A validated graph (:meth:`Graph.validate`).
    deadline_ms
        Frames whose end-to-end latency exceeds this are counted as deadline misses.
    source_timeout_s
        Silence after which ``source_lost`` is emitted (None: no watchdog).
    on_event
        Receives every :class:`StreamEvent`; it runs on the engine's threads.
    log_drops
        Also log each dropped frame at INFO level (drops are always counted).

    Returns
    -------
    LatencyReport
        Per-operator and end-to-end latency, frame counts, deadline misses, source losses.
    """
    if deadline_ms is not None and not deadline_ms > 0:
        raise ValueError(f"deadline_ms must be positive, got {deadline_ms}")
    if source_timeout_s is not None and not source_timeout_s > 0:
        raise ValueError(f"source_timeout_s must be positive, got {source_timeout_s}")
    emit: EventCallback = on_event or (lambda event: None)
    source = graph.source
    operators = graph.topological_order()
    # Resolved once: the per-frame loop only indexes lists.
    plan = [(op, [u.name for u in graph.upstream_of(op)]) for op in operators]
    op_latency: dict[str, list[float]] = {op.name: [] for op in operators}
    end_to_end: list[float] = []
    deadline_s = None if deadline_ms is None else deadline_ms / 1e3
    misses = processed = 0

    slot = LatestSlot()
    stop = threading.Event()
    watchdog = None if source_timeout_s is None else _Watchdog(slot, source_timeout_s, emit, pulled=not source.realtime)
    fed = _FeedCounts()

    def feed() -> None:
        try:
            messages = source.messages(stop)
            while True:
                if not source.realtime and not slot.wait_for_demand():
                    break
                message = next(messages, None)
                if message is None or stop.is_set():
                    break
                fed.received += 1
                if watchdog is not None:
                    watchdog.frame_arrived(message.frame_id)
                displaced = slot.put(message)
                if displaced is not None:
                    fed.dropped += 1
                    if log_drops:
                        log.info("frame %d dropped: frame %d arrived first", displaced.frame_id, message.frame_id)
                    emit(StreamEvent("frame_dropped", wall_clock(), displaced.frame_id, "a newer frame arrived"))
        except BaseException as exc:  # re-raised in the caller's thread
            fed.error = exc
        finally:
            slot.close()

    feeder = threading.Thread(target=feed, name="igikit-stream-source", daemon=True)
    started: list[Operator] = []
    t_start = wall_clock()
    warm_up_s = 0.0
    try:
        for op in operators:
            op.start()
            started.append(op)
        warm_up_s = _warm_up(source, plan)
        feeder.start()
        if watchdog is not None:
            watchdog.start()
        while True:
            message = slot.take()
            if message is None:
                break
            outputs: dict[str, Message] = {source.name: message}
            for op, ups in plan:
                given = outputs[ups[0]]
                if len(ups) > 1:
                    given = given.merged(*(outputs[u] for u in ups[1:]))
                t0 = wall_clock()
                outputs[op.name] = op.compute(given)
                op_latency[op.name].append(wall_clock() - t0)
            latency = wall_clock() - message.available_wall_s
            end_to_end.append(latency)
            processed += 1
            if deadline_s is not None and latency > deadline_s:
                misses += 1
                emit(
                    StreamEvent(
                        "deadline_miss",
                        wall_clock(),
                        message.frame_id,
                        f"end-to-end {latency * 1e3:.1f} ms > deadline {deadline_ms:g} ms",
                    )
                )
    finally:
        stop.set()
        slot.close()
        if feeder.is_alive():
            feeder.join()
        if watchdog is not None:
            watchdog.stop()
        for op in reversed(started):
            try:
                op.stop()
            except Exception:  # one failing stop() must not keep the others from releasing
                log.exception("stopping operator %s failed", op.name)
    if fed.error is not None:
        raise fed.error
    return LatencyReport(
        per_operator={name: LatencyStats.from_seconds(v) for name, v in op_latency.items()},
        end_to_end=LatencyStats.from_seconds(end_to_end),
        frames_received=fed.received,
        frames_processed=processed,
        frames_dropped=fed.dropped,
        deadline_ms=deadline_ms,
        deadline_misses=misses,
        source_lost_events=0 if watchdog is None else watchdog.losses,
        duration_s=wall_clock() - t_start,
        realtime=source.realtime,
        warm_up_ms=warm_up_s * 1e3,
    )


def _warm_up(source: Source, plan: list[tuple[Operator, list[str]]]) -> float:
    """Run every operator's :meth:`~Operator.warm_up` on the source's synthetic message; seconds taken.

    An operator warms up only when each of its upstream nodes delivered every result it declares
    (an upstream operator without a warm-up of its own adds none), so no warm-up ever sees a
    message missing what its real frames carry; the others are skipped.
    """
    sample = source.warm_up_message()
    if sample is None:
        return 0.0
    t0 = wall_clock()
    outputs: dict[str, Message] = {source.name: sample}
    for op, ups in plan:
        if not all(u in outputs for u in ups):
            continue
        given = outputs[ups[0]]
        if len(ups) > 1:
            given = given.merged(*(outputs[u] for u in ups[1:]))
        out = op.warm_up(given)
        if all(key in out.results for key in op.spec.outputs):
            outputs[op.name] = out
    return wall_clock() - t0
