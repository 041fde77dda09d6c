"""Child process for the kill -9 test: records a synthetic stream as fast as possible, forever.

Usage: python _record_child.py SESSION.h5
After each frame has been flushed it prints the frame id, so the parent knows what was written.
"""

from __future__ import annotations

import sys

from igikit.stream import Application, Message, Operator, OperatorSpec, Recorder, Sink, SyntheticSource

#: The stream the parent regenerates to check every stored frame bit for bit.
SOURCE_ARGS = {"shape": (96, 80), "n_frames": None, "realtime": False, "noise": 0.05, "seed": 7}


def expected_results(frame_id: int) -> dict[str, object]:
    """The results the child attaches to frame ``frame_id`` (besides the phantom's truth)."""
    return {
        "score": frame_id * 0.5,
        "label": f"frame-{frame_id}",
        "info": {"k": frame_id, "even": frame_id % 2 == 0},
    }


class Annotate(Operator):
    def setup(self, spec: OperatorSpec) -> None:
        spec.output("score")

    def compute(self, message: Message) -> Message:
        return message.with_results(**expected_results(message.frame_id))


class Announce(Sink):
    def receive(self, message: Message) -> None:
        print(message.frame_id, flush=True)


class Child(Application):
    def compose(self) -> None:
        source = SyntheticSource(**SOURCE_ARGS)  # type: ignore[arg-type]
        annotate = Annotate()
        recorder = Recorder(sys.argv[1], metadata=source.metadata())
        self.add_flow(source, annotate)
        self.add_flow(annotate, recorder)
        self.add_flow(recorder, Announce())  # runs after the recorder has flushed the frame


if __name__ == "__main__":
    Child().run()
