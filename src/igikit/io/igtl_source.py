"""OpenIGTLink as a stream source: every received pose (TRANSFORM / POSITION) or frame (IMAGE)
becomes a :class:`~igikit.stream.message.Message`, in arrival order, none lost.

By default the source is *pulled* (``realtime=False``): the engine asks for the next message
when the graph is ready, and messages that arrive meanwhile wait in the endpoint's bounded queue,
so a navigation loop records every pose of a 60 Hz tracker even when one update is slow. With
``realtime=True`` the engine keeps only the newest message (latest-frame-wins, drops counted),
which suits a live image display.

A dropped connection is reported at once (``on_event`` receives a ``source_lost``
:class:`~igikit.stream.events.StreamEvent`; it is also logged), and the engine's watchdog
reports the silence after its ``source_timeout_s`` as for any source.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any

import numpy as np

from igikit.errors import InputError
from igikit.io.igtl import IGTLClient, IGTLServer, _Endpoint, parse_address
from igikit.io.igtl_protocol import ReceivedMessage
from igikit.stream.events import StreamEvent
from igikit.stream.message import Message, wall_clock
from igikit.stream.source import Source

log = logging.getLogger(__name__)

#: Result names every message from :class:`IGTLSource` carries besides the frame.
DEVICE = "device"
IGTL_TYPE = "igtl_type"
PEER = "peer"
SENDER_TIME_S = "sender_time_s"
SEQ = "igtl_seq"

DeviceFilter = str | Collection[str] | Callable[[str], bool] | None


def _device_predicate(device_filter: DeviceFilter) -> Callable[[str], bool]:
    if device_filter is None:
        return lambda name: True
    if isinstance(device_filter, str):
        return lambda name: name == device_filter
    if callable(device_filter):
        return device_filter
    names = frozenset(device_filter)
    return lambda name: name in names


class IGTLSource(Source):
    """Poses or frames from an OpenIGTLink server or client, as a stream source.

    Parameters
    ----------
    endpoint
        A started :class:`IGTLServer` (clients such as a tracker connect to it), an
        :class:`IGTLClient`, or ``"HOST:PORT"`` of a remote server (PLUS): a client is then
        created, connected in :meth:`messages` and closed when the stream ends.
    kinds
        Message types to deliver: ``"TRANSFORM"`` and ``"POSITION"`` become a 4x4 pose frame,
        ``"IMAGE"`` the image array (results ``spacing_mm``, ``origin_mm``, ``direction``, LPS).
    device_filter
        A device name, a collection of names, or a predicate; None: every device.
    realtime
        False (default): pulled, nothing lost; True: latest-message-wins in the engine.
    max_messages
        End the stream after this many messages (None: run until :meth:`close` / disconnect).
    end_on_disconnect
        End the stream when the connection drops (a client) or the last client leaves (a
        server), after delivering what was queued. Otherwise the source waits for more.
    on_event
        Receives a ``source_lost`` event when a connection drops and ``source_restored`` when a
        client connects again (called on a network thread: keep it short).
    name
        Name in the graph.

    Notes
    -----
    Messages not matching ``kinds`` / ``device_filter`` are taken from the endpoint's queue and
    discarded: one consumer reads an endpoint.
    """

    provides = (DEVICE, IGTL_TYPE, PEER, SENDER_TIME_S, SEQ)

    def __init__(
        self,
        endpoint: IGTLServer | IGTLClient | str,
        *,
        kinds: Collection[str] = ("TRANSFORM", "POSITION"),
        device_filter: DeviceFilter = None,
        realtime: bool = False,
        max_messages: int | None = None,
        end_on_disconnect: bool = False,
        on_event: Callable[[StreamEvent], None] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name, realtime=realtime)
        unknown = set(kinds) - {"TRANSFORM", "POSITION", "IMAGE"}
        if unknown or not kinds:
            raise InputError(f"IGTLSource delivers TRANSFORM, POSITION or IMAGE messages, not {sorted(unknown)}")
        if max_messages is not None and max_messages < 1:
            raise InputError(f"max_messages must be at least 1, got {max_messages}")
        self._owned = isinstance(endpoint, str)
        self.endpoint: _Endpoint = IGTLClient(*parse_address(endpoint)) if isinstance(endpoint, str) else endpoint
        self.kinds = frozenset(kinds)
        self._accept = _device_predicate(device_filter)
        self.max_messages = max_messages
        self.end_on_disconnect = end_on_disconnect
        self.on_event = on_event
        self.delivered = 0
        self.skipped = 0
        self._closed = threading.Event()
        self._disconnected = threading.Event()
        self._last_frame_id = -1

    def close(self) -> None:
        """End the stream after the message being delivered (from any thread)."""
        self._closed.set()

    def metadata(self) -> dict[str, Any]:
        """Where the messages come from and which ones are delivered."""
        ep = self.endpoint
        where = f"{ep.host}:{ep.port}" if isinstance(ep, IGTLServer | IGTLClient) else "?"
        role = "server" if isinstance(ep, IGTLServer) else "client"
        return {"source": f"igtl-{role}:{where}", "igtl_kinds": ",".join(sorted(self.kinds)), "realtime": self.realtime}

    def _on_connection(self, event: str, peer: str, detail: str) -> None:
        if event == "disconnected":
            still = self.endpoint.peers
            if isinstance(self.endpoint, IGTLClient) or not still:
                self._disconnected.set()
            log.warning("OpenIGTLink source %s: %s disconnected (%s)", self.name, peer, detail)
            if self.on_event is not None:
                text = f"OpenIGTLink connection {peer} dropped ({detail}); {len(still)} connection(s) left"
                self.on_event(StreamEvent("source_lost", wall_clock(), self._last_frame_id, text))
        elif event == "connected":
            was_lost = self._disconnected.is_set()
            self._disconnected.clear()
            if was_lost and self.on_event is not None:
                self.on_event(StreamEvent("source_restored", wall_clock(), self._last_frame_id, f"{peer} connected"))

    def _to_message(self, frame_id: int, rx: ReceivedMessage) -> Message:
        results: dict[str, Any] = {
            DEVICE: rx.device,
            IGTL_TYPE: rx.kind,
            PEER: rx.peer,
            SENDER_TIME_S: rx.timestamp_s,
            SEQ: rx.seq,
        }
        # The sender's clock when it set one (OpenIGTLink timestamps are Unix s), else arrival.
        t = rx.timestamp_s if rx.timestamp_s > 0 else rx.received_unix_s
        if rx.image is not None:
            frame = rx.image.array
            results.update(
                spacing_mm=rx.image.spacing_mm,
                origin_mm=rx.image.origin_mm,
                direction=np.asarray(rx.image.direction),
            )
        else:
            assert rx.matrix is not None
            frame = rx.matrix
        frame.setflags(write=False)
        return Message(frame_id, t, rx.received_wall_s, frame, results)

    def messages(self, stop: threading.Event) -> Iterator[Message]:
        """Yield matching messages as they arrive; return on ``stop``, :meth:`close`, the message
        limit, or (with ``end_on_disconnect``) a dropped connection once the queue is drained."""
        ep = self.endpoint
        self._disconnected.clear()
        ep.add_listener(self._on_connection)
        try:
            if self._owned and isinstance(ep, IGTLClient):
                ep.start()
            if isinstance(ep, IGTLClient) and not ep.connected:
                self._disconnected.set()  # it dropped before this stream started
            while not stop.is_set() and not self._closed.is_set():
                if self.max_messages is not None and self.delivered >= self.max_messages:
                    return
                rx = ep.get(0.1)
                if rx is None:
                    if self.end_on_disconnect and self._disconnected.is_set() and ep.pending == 0:
                        return
                    continue
                if rx.kind not in self.kinds or not self._accept(rx.device):
                    self.skipped += 1
                    continue
                message = self._to_message(self.delivered, rx)
                self._last_frame_id = message.frame_id
                self.delivered += 1
                yield message
        finally:
            ep.remove_listener(self._on_connection)
            if self._owned and isinstance(ep, IGTLClient):
                ep.stop()
