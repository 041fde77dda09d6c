"""A stream graph: one source, operators and sinks, connected by flows."""

from __future__ import annotations

from typing import Union

from igikit.stream.operator import Operator
from igikit.stream.source import Source

Node = Union[Source, Operator]  # noqa: UP007 - used at run time, where `|` on ABCs reads worse


class GraphError(ValueError):
    """The graph cannot run: a cycle, no or two sources, an unreachable operator, a missing input."""


class Graph:
    """Nodes connected by flows ``upstream -> downstream``, executed in topological order.

    Every frame visits each operator once, after all of its upstream nodes. An operator with
    several upstream nodes receives their messages merged (same frame, union of results).

    Examples
    --------
    >>> from igikit.stream import SyntheticSource, NoOp
    >>> g = Graph()
    >>> src, a, b = SyntheticSource(n_frames=1), NoOp("a"), NoOp("b")
    >>> g.add_flow(src, a); g.add_flow(a, b)
    >>> [op.name for op in g.topological_order()]
    ['a', 'b']
    """

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._upstream: dict[str, list[str]] = {}

    def add_operator(self, node: Node) -> Node:
        """Add a source, operator or sink (no connection yet); returns it."""
        existing = self._nodes.get(node.name)
        if existing is not None and existing is not node:
            raise GraphError(f"two nodes are named {node.name!r}; give one a different name")
        if existing is None:
            self._nodes[node.name] = node
            self._upstream[node.name] = []
        return node

    def add_flow(self, upstream: Node, downstream: Operator) -> None:
        """Send every message leaving ``upstream`` into ``downstream`` (adding both if new)."""
        if isinstance(downstream, Source):
            raise GraphError(f"source {downstream.name!r} cannot receive messages")
        self.add_operator(upstream)
        self.add_operator(downstream)
        if upstream is downstream:
            raise GraphError(f"{upstream.name!r} cannot flow into itself")
        if upstream.name not in self._upstream[downstream.name]:
            self._upstream[downstream.name].append(upstream.name)

    @property
    def source(self) -> Source:
        """The graph's one source."""
        sources = [n for n in self._nodes.values() if isinstance(n, Source)]
        if len(sources) != 1:
            raise GraphError(f"a graph needs exactly one source, this one has {len(sources)}")
        return sources[0]

    def upstream_of(self, node: Node) -> list[Node]:
        """The nodes flowing into ``node``, in the order the flows were added."""
        return [self._nodes[name] for name in self._upstream[node.name]]

    def topological_order(self) -> list[Operator]:
        """Operators (not the source) so that each comes after everything upstream of it.

        Ties keep the order in which nodes were added, so the order is the one ``compose()``
        reads in. Raises :class:`GraphError` on a cycle.
        """
        remaining = {name: set(ups) for name, ups in self._upstream.items()}
        order: list[str] = []
        while remaining:
            ready = [name for name, ups in remaining.items() if not ups]
            if not ready:
                raise GraphError(f"the graph has a cycle through {sorted(remaining)}")
            for name in ready:
                order.append(name)
                del remaining[name]
            for ups in remaining.values():
                ups.difference_update(ready)
        return [n for n in (self._nodes[name] for name in order) if isinstance(n, Operator)]

    def validate(self) -> None:
        """Check the graph can run: one source, no cycle, every operator fed, every input made."""
        source = self.source
        provided: dict[str, set[str]] = {source.name: set(source.outputs)}
        for op in self.topological_order():
            ups = self._upstream[op.name]
            if not ups:
                raise GraphError(f"operator {op.name!r} has no upstream node: add_flow(..., {op.name})")
            available = set().union(*(provided[u] for u in ups))
            missing = [name for name in op.spec.inputs if name not in available]
            if missing:
                raise GraphError(f"operator {op.name!r} needs {missing}, which nothing upstream provides")
            provided[op.name] = available | set(op.spec.outputs)

    def __len__(self) -> int:
        return len(self._nodes)
