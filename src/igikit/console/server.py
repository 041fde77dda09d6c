"""Run the console with uvicorn, in the foreground (``igikit console``) or in a thread (tests, demos)."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from igikit.errors import InputError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def choose_port(host: str, port: int) -> tuple[int, str]:
    """``port`` when it is free on ``host``, else a free one; with the sentence to say why (or "")."""
    if not 0 <= port < 65536:
        raise InputError(f"port must be in 0..65535, got {port}")
    if port == 0:
        return free_port(host), ""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            chosen = free_port(host)
            return chosen, f"port {port} is taken on {host}; serving on port {chosen} instead"
    return port, ""


class ConsoleServer:
    """uvicorn serving ``app`` on ``host:port``; :meth:`start` runs it in a thread.

    Parameters
    ----------
    app
        The ASGI app (:func:`igikit.console.app.create_app`).
    host, port
        Where to listen (loopback by default).
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 8000) -> None:
        import uvicorn
        from uvicorn.config import WS_PROTOCOLS

        if not 0 < port < 65536:
            raise InputError(f"port must be in 1..65535, got {port}")
        # the sans-I/O websockets protocol where this uvicorn has it (the legacy one is deprecated)
        ws = "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws=ws, lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self.host, self.port = host, port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The console's address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> None:
        """Serve in this thread until interrupted: Ctrl-C (SIGINT) ends it cleanly.

        uvicorn shuts down gracefully, then raises the signal again for the caller; a console
        that was asked to stop has done so, so that is not an error here.
        """
        with contextlib.suppress(KeyboardInterrupt):
            self.server.run()

    def start(self, timeout_s: float = 20.0) -> ConsoleServer:
        """Serve in a background thread; returns when the server accepts connections."""
        self._thread = threading.Thread(target=self.server.run, name="igikit-console-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"console server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)


def serve_while(
    server: ConsoleServer,
    work: Callable[[], None],
    *,
    what: str,
    stop: threading.Event,
    close: Sequence[Callable[[], None]] = (),
) -> int:
    """Serve the console in the foreground while ``work`` (the workflow run) goes on in a thread.

    The console keeps serving the session after the run ends, until Ctrl-C; then ``stop`` is set,
    the run is waited for and ``close`` is called in order (explainers before the audit log they
    write to). A failing run is one line on stderr ("igikit: WHAT failed: ...") and exit code 1;
    what it logged stays in the console and the audit log.
    """
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
            if not stop.is_set():
                print(f"the console keeps serving this session at {server.url}; Ctrl-C to stop", flush=True)
        except BaseException as exc:  # reported; the console keeps serving what was logged
            failure.append(exc)
            message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            print(f"igikit: {what} failed: {message}", file=sys.stderr, flush=True)

    worker = threading.Thread(target=run, name=f"igikit-{what.replace(' ', '-')}", daemon=True)
    worker.start()
    try:
        server.run()
    finally:
        stop.set()
        worker.join()
        for done in close:
            done()
    print("console stopped", flush=True)
    return 1 if failure else 0
