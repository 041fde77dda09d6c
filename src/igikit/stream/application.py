"""The application: a stream whose ``compose()`` builds the graph, so that reading one function
shows the whole data path (NVIDIA Holoscan's ``Application.compose``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from igikit.stream.events import StreamEvent
from igikit.stream.graph import Graph, Node
from igikit.stream.latency import LatencyReport
from igikit.stream.operator import Operator


class Application:
    """A runnable stream: subclass it and build the graph in :meth:`compose`.

    Parameters
    ----------
    deadline_ms
        End-to-end deadline per frame; frames over it are counted (and emitted as events).
    source_timeout_s
        When no frame arrives for this long, emit ``source_lost`` (None: never).
    log_drops
        Log every dropped frame (at INFO), besides counting it.

    Examples
    --------
    >>> from igikit.stream import SyntheticSource, NoOp
    >>> class Tiny(Application):
    ...     def compose(self) -> None:
    ...         source = SyntheticSource((16, 16), n_frames=3, realtime=False)
    ...         self.add_flow(source, NoOp())
    >>> Tiny().run().frames_processed
    3
    """

    def __init__(
        self,
        *,
        deadline_ms: float | None = None,
        source_timeout_s: float | None = None,
        log_drops: bool = False,
    ) -> None:
        self.graph = Graph()
        self.deadline_ms = deadline_ms
        self.source_timeout_s = source_timeout_s
        self.log_drops = log_drops
        #: The most recent events (bounded: a long session with many drops must not grow memory).
        self.events: deque[StreamEvent] = deque(maxlen=10_000)
        self._subscribers: list[Callable[[StreamEvent], None]] = []
        self._composed = False

    def compose(self) -> None:
        """Add operators and flows (``self.add_flow(a, b)``); subclasses implement this."""
        raise NotImplementedError(f"{type(self).__name__} must implement compose()")

    def add_operator(self, node: Node) -> Node:
        """Add a node without connecting it (see :meth:`Graph.add_operator`)."""
        return self.graph.add_operator(node)

    def add_flow(self, upstream: Node, downstream: Operator) -> None:
        """Connect ``upstream -> downstream`` (see :meth:`Graph.add_flow`)."""
        self.graph.add_flow(upstream, downstream)

    def subscribe(self, callback: Callable[[StreamEvent], None]) -> None:
        """Call ``callback(event)`` for every stream event.

        Callbacks run on the engine's threads (the watchdog for ``source_lost``, the source
        thread for drops): keep them short and thread-safe.
        """
        self._subscribers.append(callback)

    def _emit(self, event: StreamEvent) -> None:
        self.events.append(event)  # deque.append is thread-safe
        for callback in self._subscribers:
            callback(event)

    def run(self) -> LatencyReport:
        """Compose (once), validate, run until the source ends; return the latency report."""
        from igikit.stream.engine import run_graph

        if not self._composed:
            self.compose()
            self.graph.validate()
            self._composed = True
        return run_graph(
            self.graph,
            deadline_ms=self.deadline_ms,
            source_timeout_s=self.source_timeout_s,
            on_event=self._emit,
            log_drops=self.log_drops,
        )
