"""The real-time stream engine: Source -> Operator -> Sink graphs, latency, deadlines, recording.

Build a stream by subclassing :class:`Application` and connecting nodes in ``compose()``::

    class Tracking(Application):
        def compose(self) -> None:
            source = ReplaySource(case)
            normalise = NormaliseIntensity()
            motion = PhaseCorrelationMotion(case.pixel_spacing_mm)
            self.add_flow(source, normalise)
            self.add_flow(normalise, motion)
            self.add_flow(motion, Recorder("session.h5", metadata=source.metadata()))

    report = Tracking(deadline_ms=100, source_timeout_s=1.0).run()
    print(report.as_table())
"""

from igikit.stream.application import Application
from igikit.stream.engine import run_graph
from igikit.stream.events import StreamEvent
from igikit.stream.graph import Graph, GraphError
from igikit.stream.latency import LatencyReport, LatencyStats
from igikit.stream.message import Message, wall_clock
from igikit.stream.motion_replay import MotionReplay
from igikit.stream.operator import FRAME, Operator, OperatorSpec, Sink
from igikit.stream.operators import CollectResults, NoOp, NormaliseIntensity, PhaseCorrelationMotion
from igikit.stream.recorder import Recorder, Session, read_session
from igikit.stream.slot import LatestSlot
from igikit.stream.source import ReplaySource, Source
from igikit.stream.synthetic import SyntheticSource

__all__ = [
    "FRAME",
    "Application",
    "CollectResults",
    "Graph",
    "GraphError",
    "LatencyReport",
    "LatencyStats",
    "LatestSlot",
    "Message",
    "MotionReplay",
    "NoOp",
    "NormaliseIntensity",
    "Operator",
    "OperatorSpec",
    "PhaseCorrelationMotion",
    "Recorder",
    "ReplaySource",
    "Session",
    "Sink",
    "Source",
    "StreamEvent",
    "SyntheticSource",
    "read_session",
    "run_graph",
    "wall_clock",
]
