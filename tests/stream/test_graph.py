"""Graph composition: topological order, validation, fan-out and fan-in."""

from __future__ import annotations

import pytest

from igikit.stream import (
    Application,
    CollectResults,
    Graph,
    GraphError,
    Message,
    NoOp,
    Operator,
    OperatorSpec,
    SyntheticSource,
)


class Add(Operator):
    """Adds result ``key`` = frame id times ``factor``, reading ``needs``."""

    def __init__(self, key: str, factor: int = 1, needs: tuple[str, ...] = ()) -> None:
        self.key, self.factor, self.needs = key, factor, needs
        super().__init__(key)

    def setup(self, spec: OperatorSpec) -> None:
        for name in self.needs:
            spec.input(name)
        spec.output(self.key)

    def compute(self, message: Message) -> Message:
        return message.with_results(**{self.key: message.frame_id * self.factor})


def _source(n: int = 4) -> SyntheticSource:
    return SyntheticSource((16, 16), n_frames=n, realtime=False)


def test_topological_order_follows_flows_not_insertion() -> None:
    g = Graph()
    src, a, b, c, d = _source(), NoOp("a"), NoOp("b"), NoOp("c"), NoOp("d")
    g.add_flow(c, d)  # added first, but downstream of everything
    g.add_flow(b, c)
    g.add_flow(src, a)
    g.add_flow(a, b)
    g.add_flow(a, c)
    order = [op.name for op in g.topological_order()]
    assert order == ["a", "b", "c", "d"]
    assert g.source is src


def test_fan_out_and_fan_in_merge_results() -> None:
    sink = CollectResults(("x", "y", "sum"))

    class Diamond(Application):
        def compose(self) -> None:
            src = _source(5)
            x, y = Add("x", 1), Add("y", 10)
            total = _Sum()
            self.add_flow(src, x)
            self.add_flow(src, y)
            self.add_flow(x, total)
            self.add_flow(y, total)
            self.add_flow(total, sink)

    report = Diamond().run()
    assert report.frames_processed == 5
    assert list(report.per_operator) == ["x", "y", "sum", "CollectResults"]
    assert sink.column("sum").tolist() == [11 * k for k in range(5)]


class _Sum(Operator):
    def __init__(self) -> None:
        super().__init__("sum")

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("x")
        spec.input("y")
        spec.output("sum")

    def compute(self, message: Message) -> Message:
        return message.with_results(sum=message.results["x"] + message.results["y"])


def test_cycle_is_refused() -> None:
    g = Graph()
    a, b = NoOp("a"), NoOp("b")
    g.add_flow(_source(), a)
    g.add_flow(a, b)
    g.add_flow(b, a)
    with pytest.raises(GraphError, match="cycle"):
        g.validate()


def test_missing_input_is_refused_before_any_frame() -> None:
    g = Graph()
    g.add_flow(_source(), Add("y", needs=("x",)))
    with pytest.raises(GraphError, match=r"needs \['x'\]"):
        g.validate()


def test_input_from_a_sibling_branch_is_not_available() -> None:
    g = Graph()
    src = _source()
    g.add_flow(src, Add("x"))
    g.add_flow(src, Add("y", needs=("x",)))  # x is computed beside y, not upstream of it
    with pytest.raises(GraphError, match="needs"):
        g.validate()


def test_source_count_names_and_orphans() -> None:
    g = Graph()
    g.add_operator(NoOp("lonely"))
    with pytest.raises(GraphError, match="exactly one source"):
        g.validate()
    g.add_flow(_source(), NoOp("fed"))
    with pytest.raises(GraphError, match="lonely"):
        g.validate()
    with pytest.raises(GraphError, match="two nodes"):
        g.add_operator(NoOp("fed"))
    with pytest.raises(GraphError, match="cannot receive"):
        g.add_flow(NoOp("fed"), _source())  # type: ignore[arg-type]


def test_compose_runs_once_and_reads_as_the_data_path() -> None:
    calls = []

    class App(Application):
        def compose(self) -> None:
            calls.append(1)
            self.add_flow(_source(3), NoOp())

    app = App()
    assert app.run().frames_processed == 3
    assert app.run().frames_processed == 3
    assert calls == [1]


def test_message_is_immutable_and_merge_checks_frames() -> None:
    import numpy as np

    m = Message(1, 0.1, 0.0, np.zeros((2, 2)))
    m2 = m.with_results(a=1)
    assert "a" not in m.results and m2.results["a"] == 1
    with pytest.raises(TypeError):
        m2.results["b"] = 2  # type: ignore[index]
    with pytest.raises(ValueError, match="cannot merge"):
        m.merged(Message(2, 0.2, 0.0, np.zeros((2, 2))))
