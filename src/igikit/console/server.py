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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igikit.errors import InputError

if TYPE_CHECKING:
    from igikit.console.users import UserStore

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


#: The login a served demo makes in its output folder: name and role (its password is random and printed).
DEMO_USER = ("demo", "physicist")


@dataclass
class ConsoleAccess:
    """Where a served run's console listens and who may log in; made by :func:`console_access`.

    Attributes
    ----------
    host, port
        Where to serve (``port`` free when chosen).
    port_note
        Why ``port`` is not the one asked for ("" when it is).
    store
        The users file (close it when the console stops).
    secret
        The console's session secret.
    demo_password
        The demo user's password ("" when the install's users log in).
    """

    host: str
    port: int
    port_note: str
    store: UserStore
    secret: bytes
    demo_password: str = ""

    def server(
        self, app: Any, *, audit_path: Path, about: str = "", login_note: str = "", log_label: str = "audit log"
    ) -> ConsoleServer:
        """The :class:`ConsoleServer` for ``app``, after printing where it serves and, for a demo, the login.

        Printed: the port note, a warning (stderr) when serving beyond this machine, then
        ``igikit console: URL  (ABOUT; LOG_LABEL AUDIT_PATH); Ctrl-C to stop`` and, for a demo,
        ``log in as: NAME / PASSWORD  (LOGIN_NOTE)``.
        """
        server = ConsoleServer(app, host=self.host, port=self.port)
        if self.port_note:
            print(self.port_note, flush=True)
        if not is_loopback(self.host):
            print(f"warning: serving on {self.host}, beyond this machine, over plain HTTP", file=sys.stderr)
        where = f"{about}; {log_label} {audit_path}" if about else f"{log_label} {audit_path}"
        print(f"igikit console: {server.url}  ({where}); Ctrl-C to stop", flush=True)
        if self.demo_password:
            note = f"  ({login_note})" if login_note else ""
            print(f"log in as: {DEMO_USER[0]} / {self.demo_password}{note}", flush=True)
        return server


def console_access(
    host: str, port: int, *, demo_dir: Path | None = None, users_path: Path | None = None,
    warn_no_users: bool = True,
) -> ConsoleAccess:
    """Choose the port (:func:`choose_port`) and open who may log in to a served run.

    With ``demo_dir``: a users file and session secret inside it (``users.db``, ``console.secret``)
    holding :data:`DEMO_USER` with a random password, kept when an earlier demo there made it.
    Else the install's users (``users_path``, default ``~/.igikit/users.db``; a warning on stderr
    when it holds none, unless ``warn_no_users`` is False because the caller checks for the role it
    needs) and the secret beside them.
    """
    import secrets

    from igikit.console.users import SECRET_FILE, USERS_FILE, UserStore, default_users_path, load_secret

    chosen, why = choose_port(host, port)
    password = ""
    if demo_dir is not None:
        store = UserStore(demo_dir / USERS_FILE, create=True)
        if store.get(DEMO_USER[0]) is None:
            password = secrets.token_urlsafe(12)
            store.add(DEMO_USER[0], DEMO_USER[1], password)
        else:
            password = "(unchanged: an earlier demo in this folder set it)"
        secret = load_secret(demo_dir / SECRET_FILE)
    else:
        store = UserStore(users_path or default_users_path(), create=True)
        if warn_no_users and not store.list():
            print(f"warning: no users in {store.path}; add one with: igikit users add NAME --role operator",
                  file=sys.stderr)
        secret = load_secret(store.path.parent / SECRET_FILE)
    return ConsoleAccess(host, chosen, why, store, secret, password)


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
