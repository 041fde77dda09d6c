"""OpenIGTLink server and client, so that 3D Slicer, PLUS and trackers can join a session.

:class:`IGTLServer` streams frames (IMAGE), tracked positions (TRANSFORM), text (STRING) and
status (STATUS) to every connected client and receives what clients send (TRANSFORMs from a
tracker); :class:`IGTLClient` connects to a remote server (PLUS) and receives everything it sends.
Both put every received message, in arrival order, into one bounded queue read with
:meth:`~IGTLClient.get` or :meth:`~IGTLClient.received`.

Why not pyigtl's own ``OpenIGTLinkServer`` / ``OpenIGTLinkClient`` (pyigtl 0.3, ``comm.py``)?

* they keep only the latest message per device (``incoming_messages[device_name] = message``):
  a 60 Hz tracker read at 20 Hz loses two poses in three, silently. Here nothing is overwritten;
* the server is a plain ``socketserver.TCPServer`` whose handler loops until shutdown: it serves
  one client at a time and a second client (Slicer beside a tracker) waits forever;
* it checks no CRC, believes any body size (a corrupt header announcing 2**63 bytes is read
  for), and logs a traceback per socket error; unknown types are read and ignored uncounted;
* its outgoing queue (100 messages) drops the oldest message silently, and with one connection
  served at a time nothing can be sent to Slicer and a recorder together;
* it installs SIGINT / SIGTERM handlers in the host process, and polls with 10 ms sleeps.

pyigtl's message classes are still used for the TRANSFORM and IMAGE bodies (see
:mod:`igikit.io.igtl_protocol`).

Robustness rules. Each connection has a reader thread and a writer thread; a slow or broken
client never blocks the others. A message with a wrong CRC, an unknown type or a malformed body
is skipped (the stream stays in step, since its size is known); a bad header, an oversized body
or a truncated / stalled message ends that connection (its framing can no longer be trusted).
Each rejection is logged and counted by reason (:attr:`IGTLServer.rejected`).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from igikit.core.image import Image
from igikit.core.transform import Transform
from igikit.errors import InputError
from igikit.io.igtl_protocol import (
    DEFAULT_MAX_BODY_BYTES,
    HEADER_SIZE,
    KNOWN_TYPES,
    REASONS,
    Header,
    IGTLProtocolError,
    IGTLStatus,
    ReceivedMessage,
    crc64,
    decode_body,
    lps_to_ras_matrix,
    pack_image,
    pack_position,
    pack_status,
    pack_string,
    pack_transform,
    parse_header,
)

log = logging.getLogger(__name__)

#: The OpenIGTLink port registered with IANA (Slicer's and PLUS's default).
DEFAULT_PORT = 18944

#: Received messages waiting for the consumer, at most (count and bytes): 100,000 poses is
#: 7 minutes of 4 tools at 60 Hz; beyond either limit new messages are dropped and counted.
DEFAULT_MAX_QUEUED = 100_000
DEFAULT_MAX_QUEUED_BYTES = 512 * 1024 * 1024

#: Bytes waiting to be sent to one client, at most; beyond it the oldest are dropped and counted
#: (a viewer that cannot keep up sees the newest frames, and the others are not held back).
DEFAULT_MAX_SEND_BYTES = 64 * 1024 * 1024

#: A message whose bytes stop arriving for this long (s) ends its connection as ``truncated``.
DEFAULT_BODY_TIMEOUT_S = 5.0

_POLL_S = 0.25
_LOG_FIRST = 10  # rejections logged per reason before only every 100th is

Listener = Callable[[str, str, str], None]


def parse_address(text: str, *, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``"HOST:PORT"`` (or ``"HOST"``) as ``(host, port)``; raises :class:`InputError` when malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    try:
        port = int(port_text)
    except ValueError:
        raise InputError(f"address {text!r} is not HOST:PORT (port {port_text!r} is not a number)") from None
    if not host or not 0 < port < 65536:
        raise InputError(f"address {text!r} is not HOST:PORT with a port in 1-65535")
    return host, port


class _Inbox:
    """The received-message queue: bounded by count and bytes, never overwriting, counting drops."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise InputError("queue limits must be positive")
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._items: deque[ReceivedMessage] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._seq = 0
        self.dropped = 0

    def put(self, **fields: Any) -> ReceivedMessage | None:
        """Append a message (its ``seq`` assigned here); None when the queue is full (dropped)."""
        nbytes = int(fields.get("nbytes", 0))
        with self._cond:
            seq = self._seq
            self._seq += 1
            if len(self._items) >= self.max_messages or self._bytes + nbytes > self.max_bytes:
                self.dropped += 1
                return None
            message = ReceivedMessage(seq=seq, **fields)
            self._items.append(message)
            self._bytes += nbytes
            self._cond.notify_all()
        return message

    def get(self, timeout_s: float | None) -> ReceivedMessage | None:
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout_s):
                return None
            message = self._items.popleft()
            self._bytes -= message.nbytes
            return message

    def __len__(self) -> int:
        return len(self._items)


class _Connection:
    """One TCP connection: a reader thread (framing, checks, decoding) and a writer thread."""

    def __init__(self, endpoint: _Endpoint, sock: socket.socket, peer: str) -> None:
        self.endpoint, self.sock, self.peer = endpoint, sock, peer
        sock.setblocking(True)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._out: deque[bytes] = deque()
        self._out_bytes = 0
        self._cond = threading.Condition()
        self.closed = False
        self.close_reason = ""
        self.send_dropped = 0
        self._busy = False
        # A selector (epoll on Linux) rather than select(): no limit on descriptor numbers.
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)
        self._reader = threading.Thread(target=self._read_loop, name=f"igtl-read-{peer}", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"igtl-write-{peer}", daemon=True)

    def start(self) -> None:
        self._writer.start()
        self._reader.start()

    def send(self, data: bytes) -> bool:
        """Queue ``data`` for this client; False when the connection is closed."""
        with self._cond:
            if self.closed:
                return False
            limit = self.endpoint.max_send_bytes
            while self._out and self._out_bytes + len(data) > limit:
                self._out_bytes -= len(self._out.popleft())
                self.send_dropped += 1
                self.endpoint._count_send_drop(self.peer)
            self._out.append(data)
            self._out_bytes += len(data)
            self._cond.notify_all()  # all: wait_sent() waits on the same condition as the writer
        return True

    def close(self, reason: str) -> None:
        """End the connection (idempotent); both threads finish soon after."""
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self.close_reason = reason
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked sendall / select

    def join(self, timeout_s: float) -> None:
        for thread in (self._reader, self._writer):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout_s)

    # ------------------------------------------------------------- threads
    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._out) or self.closed)
                if self.closed:
                    return
                data = self._out.popleft()
                self._out_bytes -= len(data)
                self._busy = True
            try:
                self.sock.sendall(data)
            except OSError as exc:
                self.close(f"send failed: {exc}")
                return
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def wait_sent(self, timeout_s: float) -> bool:
        """Wait until everything queued was handed to the operating system (or the connection closed)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.closed or (not self._out and not self._busy), timeout_s)

    def _read_loop(self) -> None:
        ep = self.endpoint
        reason = "closed by the peer"
        try:
            while not self.closed:
                head = self._recv_exact(HEADER_SIZE, between_messages=True)
                if head is None:
                    break
                try:
                    header = parse_header(head, max_body_bytes=ep.max_body_bytes)
                except IGTLProtocolError as exc:
                    ep._reject(exc.reason, self.peer, str(exc))
                    reason = f"dropped after {exc.reason}"
                    break
                body = self._recv_exact(header.body_size, between_messages=False)
                if body is None:
                    break
                self._handle(header, body)
        except IGTLProtocolError as exc:  # truncated or stalled message
            if not self.closed:
                ep._reject(exc.reason, self.peer, str(exc))
                reason = f"dropped after {exc.reason}"
        except (OSError, ValueError) as exc:  # ValueError: a socket closed meanwhile
            reason = f"socket error: {exc}"
        except Exception as exc:  # an igikit bug: end this connection, keep serving the others
            log.exception("OpenIGTLink: reading from %s failed", self.peer)
            reason = f"internal error: {type(exc).__name__}"
        finally:
            self._selector.close()
            self.close(self.close_reason or reason)
            self._writer.join(2.0)
            with contextlib.suppress(OSError):
                self.sock.close()
            ep._connection_closed(self)

    def _handle(self, header: Header, body: bytes) -> None:
        ep = self.endpoint
        arrived_wall, arrived_unix = _wall_clock(), time.time()
        if ep.check_crc and crc64(body) != header.crc:
            ep._reject("bad_crc", self.peer, f"{header.type} {header.device!r}: CRC-64 mismatch, message skipped")
            return
        if header.type not in KNOWN_TYPES:
            ep._reject("unknown_type", self.peer, f"message type {header.type!r} ({header.device!r}) skipped")
            return
        try:
            decoded = decode_body(header, body)
        except IGTLProtocolError as exc:
            ep._reject(exc.reason, self.peer, f"{header.device!r}: {exc}, message skipped")
            return
        ep._deliver(header, decoded, arrived_wall, arrived_unix, self.peer, len(body))

    def _recv_exact(self, n: int, *, between_messages: bool) -> bytes | None:
        """``n`` bytes; None on a clean end (peer closed between messages, or we closed).

        Raises ``truncated`` when the peer closes inside a message or stops sending for longer
        than the body timeout.
        """
        if n == 0:
            return b""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        last_progress = _wall_clock()
        while got < n:
            if self.closed:
                return None
            if not self._selector.select(_POLL_S):
                idle = _wall_clock() - last_progress
                if (got or not between_messages) and idle > self.endpoint.body_timeout_s:
                    raise IGTLProtocolError(
                        "truncated", f"message stalled: {got} of {n} bytes, nothing for {idle:.1f} s"
                    )
                continue
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                if self.closed or (got == 0 and between_messages):
                    return None
                what = "header" if between_messages else "body"
                raise IGTLProtocolError("truncated", f"connection closed inside a {what}: {got} of {n} bytes")
            got += k
            last_progress = _wall_clock()
        return bytes(buf)


#: igikit.stream.message.wall_clock (monotonic, high resolution), without importing the stream
#: package into every user of igikit.io.
_wall_clock = time.perf_counter


class _Endpoint:
    """What a server and a client share: the inbox, counters, sending, listeners."""

    def __init__(
        self,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        max_send_bytes: int = DEFAULT_MAX_SEND_BYTES,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        check_crc: bool = True,
    ) -> None:
        if max_body_bytes < 1 or max_send_bytes < 1 or not body_timeout_s > 0:
            raise InputError("OpenIGTLink limits (body size, send buffer, body timeout) must be positive")
        self.max_body_bytes = int(max_body_bytes)
        self.max_send_bytes = int(max_send_bytes)
        self.body_timeout_s = float(body_timeout_s)
        self.check_crc = check_crc
        self._inbox = _Inbox(max_queued, max_queued_bytes)
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._rejected: Counter[str] = Counter()
        self._received: Counter[str] = Counter()
        self._send_dropped = 0
        self._listeners: list[Listener] = []

    # ------------------------------------------------------------ receiving
    def get(self, timeout_s: float | None = None) -> ReceivedMessage | None:
        """The oldest received message; waits up to ``timeout_s`` (None: forever), then None."""
        return self._inbox.get(timeout_s)

    def received(
        self, stop: threading.Event | None = None, *, idle_timeout_s: float | None = None
    ) -> Iterator[ReceivedMessage]:
        """Yield received messages in arrival order until ``stop`` is set, nothing arrives for
        ``idle_timeout_s`` (None: wait for ever) or, for a client, the connection closed and
        everything it delivered was taken."""
        last = _wall_clock()
        while stop is None or not stop.is_set():
            message = self._inbox.get(_POLL_S)
            if message is not None:
                last = _wall_clock()
                yield message
            elif self._finished() or (idle_timeout_s is not None and _wall_clock() - last > idle_timeout_s):
                return

    def _finished(self) -> bool:
        """True when no more messages can arrive (a server can always get new clients)."""
        return False

    @property
    def pending(self) -> int:
        """Received messages not yet taken."""
        return len(self._inbox)

    @property
    def rejected(self) -> dict[str, int]:
        """Rejected messages by reason (see :data:`~igikit.io.igtl_protocol.REASONS`), zeros included."""
        with self._lock:
            counts = {reason: self._rejected[reason] for reason in REASONS}
        counts["queue_full"] = self._inbox.dropped
        return counts

    @property
    def dropped(self) -> int:
        """Received messages dropped because the queue was full (the consumer too slow)."""
        return self._inbox.dropped

    @property
    def received_counts(self) -> dict[str, int]:
        """Accepted messages by type."""
        with self._lock:
            return dict(self._received)

    @property
    def send_dropped(self) -> int:
        """Outgoing messages dropped because a client did not read fast enough."""
        with self._lock:
            return self._send_dropped

    @property
    def peers(self) -> list[str]:
        """``host:port`` of every open connection."""
        with self._lock:
            return [c.peer for c in self._connections]

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(event, peer, detail)`` on ``"connected"`` / ``"disconnected"``.

        It runs on a connection thread: keep it short.
        """
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling ``callback`` (no error when it was not added)."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    # -------------------------------------------------------------- sending
    def send_transform(
        self,
        name: str,
        transform: Transform | npt.ArrayLike,
        timestamp_s: float | None = None,
        *,
        lps_to_ras: bool = False,
    ) -> int:
        """Send a 4x4 pose as TRANSFORM to every client; returns how many it was queued for.

        ``lps_to_ras=True`` converts a transform between patient (LPS) frames into Slicer's RAS;
        tracker poses are sent as they are.
        """
        m = transform.matrix if isinstance(transform, Transform) else np.asarray(transform, dtype=np.float64)
        if lps_to_ras:
            m = lps_to_ras_matrix(m)
        return self._broadcast(pack_transform(name, m, _stamp(timestamp_s)))

    def send_image(
        self,
        name: str,
        image: Image | npt.ArrayLike,
        timestamp_s: float | None = None,
        *,
        spacing_mm: npt.ArrayLike | None = None,
        origin_mm: npt.ArrayLike | None = None,
        direction: npt.ArrayLike | None = None,
    ) -> int:
        """Send a 2D or 3D image (LPS geometry, sent as index-to-RAS) as IMAGE to every client.

        An array is placed with ``spacing_mm`` / ``origin_mm`` / ``direction`` (ITK order and
        meaning, as :class:`Image`); an :class:`Image` carries its own geometry.
        """
        if not isinstance(image, Image):
            arr = np.asarray(image)
            d = arr.ndim
            image = Image(
                arr,
                tuple(np.asarray(spacing_mm, dtype=float).reshape(-1)) if spacing_mm is not None else (),
                tuple(np.asarray(origin_mm, dtype=float).reshape(-1)) if origin_mm is not None else (),
                np.asarray(direction, dtype=float).reshape(d, d) if direction is not None else np.empty((0, 0)),
            )
        elif spacing_mm is not None or origin_mm is not None or direction is not None:
            raise InputError("an Image carries its own geometry; give spacing/origin/direction only with an array")
        return self._broadcast(pack_image(name, image, _stamp(timestamp_s)))

    def send_string(self, name: str, text: str, timestamp_s: float | None = None) -> int:
        """Send ``text`` as STRING to every client."""
        return self._broadcast(pack_string(name, text, _stamp(timestamp_s)))

    def send_status(
        self,
        name: str,
        code: int | str = "ok",
        *,
        subcode: int = 0,
        error_name: str = "",
        message: str = "",
        timestamp_s: float | None = None,
    ) -> int:
        """Send a STATUS (code number or name such as ``"ok"``, ``"not_ready"``) to every client."""
        data = pack_status(name, code, _stamp(timestamp_s), subcode=subcode, error_name=error_name, message=message)
        return self._broadcast(data)

    def send_position(
        self,
        name: str,
        position_mm: npt.ArrayLike,
        quaternion_xyzw: npt.ArrayLike | None = None,
        timestamp_s: float | None = None,
    ) -> int:
        """Send a POSITION (point and optional orientation quaternion) to every client."""
        return self._broadcast(pack_position(name, position_mm, _stamp(timestamp_s), quaternion_xyzw))

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued outgoing message was sent; False when ``timeout_s`` ran out."""
        deadline = _wall_clock() + timeout_s
        with self._lock:
            connections = list(self._connections)
        return all(c.wait_sent(max(0.0, deadline - _wall_clock())) for c in connections)

    def _broadcast(self, data: bytes) -> int:
        with self._lock:
            connections = list(self._connections)
        return sum(c.send(data) for c in connections)

    # ------------------------------------------------------ connection hooks
    def _add_connection(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.append(conn)
        log.info("OpenIGTLink: %s connected", conn.peer)
        conn.start()
        self._notify("connected", conn.peer, "")

    def _connection_closed(self, conn: _Connection) -> None:
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        log.info("OpenIGTLink: %s disconnected (%s)", conn.peer, conn.close_reason)
        self._notify("disconnected", conn.peer, conn.close_reason)

    def _notify(self, event: str, peer: str, detail: str) -> None:
        for callback in list(self._listeners):
            try:
                callback(event, peer, detail)
            except Exception:  # a listener's bug must not kill a connection thread
                log.exception("OpenIGTLink listener failed on %s", event)

    def _reject(self, reason: str, peer: str, detail: str) -> None:
        with self._lock:
            self._rejected[reason] += 1
            n = self._rejected[reason]
        if n <= _LOG_FIRST or n % 100 == 0:
            log.warning("OpenIGTLink: rejected from %s (%s, #%d): %s", peer, reason, n, detail)

    def _count_send_drop(self, peer: str) -> None:
        with self._lock:
            self._send_dropped += 1
            n = self._send_dropped
        if n <= _LOG_FIRST or n % 100 == 0:
            log.warning("OpenIGTLink: %s reads too slowly; oldest outgoing message dropped (#%d)", peer, n)

    def _deliver(self, header: Header, decoded: Any, wall_s: float, unix_s: float, peer: str, nbytes: int) -> None:
        message = self._inbox.put(
            kind=header.type,
            device=header.device,
            timestamp_s=header.timestamp_s,
            received_wall_s=wall_s,
            received_unix_s=unix_s,
            peer=peer,
            matrix=decoded.matrix,
            image=decoded.image,
            text=decoded.text,
            status=decoded.status,
            metadata=decoded.metadata,
            nbytes=nbytes + HEADER_SIZE,
        )
        if message is None:
            n = self._inbox.dropped
            if n <= _LOG_FIRST or n % 100 == 0:
                log.warning("OpenIGTLink: receive queue full (%d messages); message dropped (#%d)", self.pending, n)
            return
        with self._lock:
            self._received[header.type] += 1

    def _close_all(self, timeout_s: float = 2.0) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.close("endpoint stopped")
        for conn in connections:
            conn.join(timeout_s)


def _stamp(timestamp_s: float | None) -> float:
    if timestamp_s is None:
        return time.time()
    t = float(timestamp_s)
    if not (np.isfinite(t) and 0 <= t < 2**32):
        raise InputError(f"OpenIGTLink timestamp must be 0 <= t < 2**32 s (Unix time), got {timestamp_s}")
    return t


class IGTLServer(_Endpoint):
    """An OpenIGTLink server serving several clients at once (Slicer, a tracker, a recorder).

    Parameters
    ----------
    host
        Interface to listen on; loopback by default (give ``"0.0.0.0"`` deliberately).
    port
        TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
    max_clients
        Connections beyond this are refused (closed at once, logged).
    max_body_bytes
        Largest body accepted; a larger announced body ends that client (``oversized``).
    max_queued, max_queued_bytes
        Received messages held for the consumer; beyond them new ones are dropped and counted
        (:attr:`dropped`) - never overwritten.
    max_send_bytes
        Per-client outgoing buffer; beyond it that client's oldest messages are dropped.
    body_timeout_s
        A message whose bytes stall this long ends its connection (``truncated``).
    check_crc
        Verify each body's CRC-64 (a mismatch skips the message as ``bad_crc``).

    Examples
    --------
    >>> with IGTLServer() as server:
    ...     n = server.send_string("Status", "ready")  # to every connected client (none yet)
    >>> n
    0
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_clients: int = 16, **limits: Any) -> None:
        super().__init__(**limits)
        if not 0 <= int(port) < 65536:
            raise InputError(f"port must be 0-65535, got {port}")
        if max_clients < 1:
            raise InputError(f"max_clients must be at least 1, got {max_clients}")
        self.host, self._port, self.max_clients = host, int(port), max_clients
        self.refused = 0
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._client_seen = threading.Condition()

    @property
    def port(self) -> int:
        """The listening port (the chosen one when created with port 0)."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to connect to."""
        return self.host, self._port

    def start(self) -> IGTLServer:
        """Bind, listen and start accepting; raises :class:`InputError` when the port is taken."""
        if self._listener is not None:
            return self
        try:
            sock = socket.create_server((self.host, self._port), reuse_port=False)
        except OSError as exc:
            raise InputError(f"cannot listen on {self.host}:{self._port}: {exc.strerror or exc}") from None
        sock.settimeout(None)
        self._listener = sock
        self._port = sock.getsockname()[1]
        self._stop.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="igtl-accept", daemon=True)
        self._accept_thread.start()
        log.info("OpenIGTLink server listening on %s:%d", self.host, self._port)
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection and wait for their threads (idempotent)."""
        self._stop.set()
        if self._accept_thread is not None:
            self._accept_thread.join(2.0)
            self._accept_thread = None
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        self._close_all()

    def __enter__(self) -> IGTLServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_clients(self, n: int = 1, timeout_s: float = 5.0) -> bool:
        """Wait until at least ``n`` clients are connected; False after ``timeout_s``."""
        with self._client_seen:
            return self._client_seen.wait_for(lambda: len(self.peers) >= n, timeout_s)

    def _notify(self, event: str, peer: str, detail: str) -> None:
        super()._notify(event, peer, detail)
        with self._client_seen:
            self._client_seen.notify_all()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            self._accept_until_stopped(listener, selector)

    def _accept_until_stopped(self, listener: socket.socket, selector: selectors.BaseSelector) -> None:
        while not self._stop.is_set():
            try:
                if not selector.select(_POLL_S):
                    continue
                sock, addr = listener.accept()
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                log.exception("OpenIGTLink: accept failed")
                time.sleep(_POLL_S)
                continue
            peer = f"{addr[0]}:{addr[1]}"
            if len(self.peers) >= self.max_clients:
                self.refused += 1
                log.warning("OpenIGTLink: refused %s (already %d clients)", peer, self.max_clients)
                with contextlib.suppress(OSError):
                    sock.close()
                continue
            self._add_connection(_Connection(self, sock, peer))


class IGTLClient(_Endpoint):
    """Connects to an OpenIGTLink server (PLUS, Slicer) and receives every message at full rate.

    Unlike pyigtl's client, which keeps only the latest message per device, every message is
    queued in arrival order (bounded; overflow is counted, never silent). It can send too.

    Parameters
    ----------
    host, port
        The server.
    connect_timeout_s
        How long :meth:`start` tries to connect before raising :class:`InputError`.
    **limits
        As for :class:`IGTLServer` (``max_body_bytes``, ``max_queued``, ...).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, connect_timeout_s: float = 5.0, **limits: Any
    ) -> None:
        super().__init__(**limits)
        self.host, self.port = host, int(port)
        self.connect_timeout_s = connect_timeout_s
        self._conn: _Connection | None = None

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return self._conn is not None and not self._conn.closed

    @property
    def close_reason(self) -> str:
        """Why the connection ended ("" while open or before connecting)."""
        return "" if self._conn is None else self._conn.close_reason

    def start(self) -> IGTLClient:
        """Connect (retrying until ``connect_timeout_s``); raises :class:`InputError` on failure."""
        if self.connected:
            return self
        deadline = _wall_clock() + self.connect_timeout_s
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=max(0.1, self.connect_timeout_s))
                break
            except OSError as exc:
                if _wall_clock() >= deadline:
                    raise InputError(
                        f"cannot connect to OpenIGTLink server {self.host}:{self.port}: {exc.strerror or exc}"
                    ) from None
                time.sleep(0.1)
        sock.settimeout(None)
        local = sock.getsockname()
        self._conn = _Connection(self, sock, f"{self.host}:{self.port}")
        log.debug("OpenIGTLink client %s:%d connected to %s:%d", local[0], local[1], self.host, self.port)
        self._add_connection(self._conn)
        return self

    def stop(self) -> None:
        """Close the connection and wait for its threads (idempotent)."""
        self._close_all()

    def _finished(self) -> bool:
        return self._conn is not None and self._conn.closed and self.pending == 0

    def __enter__(self) -> IGTLClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "DEFAULT_PORT",
    "IGTLClient",
    "IGTLProtocolError",
    "IGTLServer",
    "IGTLStatus",
    "ReceivedMessage",
    "parse_address",
]
