"""Operators and sinks: the steps of a stream graph (Holoscan's shape: ``setup`` then ``compute``).

An operator declares in :meth:`Operator.setup` the results it reads and the results it adds, so
that :class:`igikit.stream.graph.Graph` can check, before any frame flows, that every input is
produced upstream. :meth:`Operator.compute` takes one message and returns one message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from igikit.stream.message import Message

#: The name under which every source provides the acquired image (``message.frame``).
FRAME = "frame"


@dataclass
class OperatorSpec:
    """What an operator reads and adds, by result name (filled in by :meth:`Operator.setup`)."""

    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def input(self, name: str) -> None:
        """Declare that the operator reads result ``name`` (``"frame"``: the acquired image)."""
        self.inputs.append(name)

    def output(self, name: str) -> None:
        """Declare that the operator adds result ``name`` to the messages it returns."""
        self.outputs.append(name)


class Operator(ABC):
    """One step of a graph: a message in, a message out.

    Subclasses implement :meth:`setup` and :meth:`compute`; they may override :meth:`start`
    (called before the first frame, e.g. to forget the reference of a previous run),
    :meth:`warm_up` (a dry run on a synthetic frame before the source starts, so the first real
    frame meets its deadline) and :meth:`stop` (called once after the last frame, also after a
    failure).

    Parameters
    ----------
    name
        Unique name in its graph, used in the latency table; default: the class name.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).__name__
        self.spec = OperatorSpec()
        self.setup(self.spec)

    def setup(self, spec: OperatorSpec) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Declare inputs and outputs with ``spec.input(name)`` / ``spec.output(name)``."""

    @abstractmethod
    def compute(self, message: Message) -> Message:
        """Process one frame; return ``message`` itself or ``message.with_results(...)``."""

    def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare for a run (called before the source starts)."""

    def warm_up(self, message: Message) -> Message:
        """Run the per-frame code once on a synthetic message, before the source starts.

        The first real frame would otherwise pay for lazy imports, the first OpenCV call, JIT
        compilation and first allocations, and miss its deadline. The engine calls this once per
        run, after every :meth:`start` and before the source's first frame, with a synthetic frame
        of the stream's shape and dtype (``frame_id`` -1) carrying the warm-up results of the
        operators upstream. An override exercises what :meth:`compute` does on throw-away state
        and returns the message with the results ``compute`` would add, so the operators
        downstream can warm up too; it must leave no trace: no run state changed, nothing written,
        logged or published. The default does nothing and returns ``message``.
        """
        return message

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what the run held (called once after the last frame, even after a failure)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Sink(Operator):
    """An operator at the end of a path: it consumes messages (writes, displays, sends).

    Subclasses implement :meth:`receive`; the message passes on unchanged, so a sink may also sit
    in the middle of a graph (a recorder before a slow display, for instance).
    """

    @abstractmethod
    def receive(self, message: Message) -> None:
        """Consume one message."""

    def compute(self, message: Message) -> Message:
        """Hand ``message`` to :meth:`receive` and pass it on unchanged."""
        self.receive(message)
        return message
