"""The supervisor's web console: a FastAPI app, one WebSocket, one page.

Routes (all JSON except the page and its static files):

======================================  ======================================================
``GET  /``                              the page (login form, then the live console)
``GET  /api/health``                    ``{"ok": true}`` (no login; for readiness checks)
``POST /api/login``                     ``{"name", "password"}`` -> the user and a CSRF token
``POST /api/logout``
``GET  /api/me``                        the logged-in user, role, permissions, CSRF token
``GET  /api/state``                     supervision state and recent events
``POST /api/alerts/{id}/acknowledge``   ``{"reason"}``
``POST /api/pending/{id}/approve``      ``{"reason"}``; likewise ``/veto``
``POST /api/pause``, ``/api/resume``    ``{"reason"}``
``POST /api/autonomy``                  ``{"level": 0-3, "reason"}`` (physicists)
``POST /api/annotate``                  ``{"text"}``
``POST /api/evidence``                  ``{"frame_id"}`` (optional): explain the AI tracker's answer on a
                                        frame (computed off the treatment loop); -> ``{"seq", "url"}``
``GET  /api/evidence/{seq}``            the evidence image (PNG) of the audit-log record ``seq``
``GET  /vendor/{name}``                 three.js for the 3D navigation scene (:mod:`igikit.console.vendor`)
``WS   /ws``                            ``hello``, then ``frame`` / ``event`` / ``state`` messages;
                                        ``scene`` (on connect and on change) and ``tool`` (latest-wins)
                                        in navigation sessions
======================================  ======================================================

Security: passwords are checked against argon2id hashes; the session is a cookie signed with the
install's secret (``SameSite=Strict``, ``HttpOnly``); every POST but the login carries the session's
CSRF token in the ``X-CSRF-Token`` header, the login must be sent as JSON (a cross-site form cannot),
and requests whose ``Origin`` is another site are refused. The role is read from the users file on
every action, so removing a user takes effect at once. The console computes nothing clinical: it
shows what the session publishes and forwards human actions to it, which logs them — refused ones
too (an observer's click is a 403 *and* a refused entry in the audit log).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from igikit.console.broadcast import Broadcaster, Viewer
from igikit.console.users import User, UserStore
from igikit.errors import InputError
from igikit.supervise.autonomy import AutonomyLevel
from igikit.supervise.session import ROLE_PERMISSIONS, ActionRefused, Actor, SupervisedSession

log = logging.getLogger(__name__)

COOKIE = "igikit_console"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE_S = 12 * 3600
_STATUS = {"forbidden": 403, "conflict": 409, "not_found": 404}

_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; script-src 'self'; "
    "style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class Explainer(Protocol):
    """What the console needs of an explanation source (:class:`igikit.ai.evidence.ExplanationService`)."""

    folder: Path

    def request(self, frame_id: int | None = None, *, requested_by: str = "") -> Future[Any]:
        """Start explaining a frame; the future's result has ``seq`` (its audit-log record)."""
        ...


def static_dir() -> str:
    """Folder of the page's HTML, JS and CSS."""
    return str(resources.files("igikit.console") / "static")


def create_app(
    session: SupervisedSession,
    users: UserStore,
    *,
    secret: bytes,
    title: str = "",
    secure_cookie: bool = False,
    on_shutdown: Callable[[], None] | None = None,
    explainer: Explainer | None = None,
    explain_unavailable: str = "",
) -> FastAPI:
    """The console app for ``session``.

    Parameters
    ----------
    session
        The supervised session to show and act on.
    users
        Who may log in, and their roles.
    secret
        Key that signs session cookies (:func:`igikit.console.users.load_secret`).
    title
        Shown in the page header (what is being supervised).
    secure_cookie
        Mark the cookie ``Secure`` (when served over HTTPS, e.g. behind a proxy).
    on_shutdown
        Called when the server stops (to stop a feed).
    explainer
        Explains the AI tracker's answer on a frame on request; its ``folder`` is the only place
        evidence files are served from.
    explain_unavailable
        Without an explainer: why this session's answers cannot be explained (the page says so).
    """
    broadcaster = Broadcaster(session)
    explain_state = {"explain": explainer is not None,
                     "explain_unavailable": explain_unavailable if explainer is None else ""}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broadcaster.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            broadcaster.stop()
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPI(title="igikit console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.session = session
    app.state.broadcaster = broadcaster
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret.decode("ascii", "replace"),
        session_cookie=COOKIE,
        max_age=SESSION_MAX_AGE_S,
        same_site="strict",
        https_only=secure_cookie,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if request.method == "POST" and not _same_origin(request.headers.get("origin"), request.headers.get("host")):
            return JSONResponse({"detail": "cross-site request refused"}, status_code=403)
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")

    @app.get("/vendor/{name}")
    def vendor(name: str) -> Response:
        from igikit.console.vendor import FILES, VendorMissing, vendor_source

        if name not in FILES:
            raise HTTPException(404, f"no vendor file {name!r}")
        try:
            return Response(vendor_source(name), media_type="text/javascript")
        except VendorMissing as exc:
            log.error("%s", exc)
            return JSONResponse({"detail": str(exc)}, status_code=404)

    # ------------------------------------------------------------------------- helpers
    def current_user(request: Request) -> User:
        name = request.session.get("user")
        user = users.get(name) if isinstance(name, str) else None
        if user is None:
            request.session.clear()
            raise HTTPException(401, "not logged in")
        return user

    def acting_user(request: Request) -> Actor:
        user = current_user(request)
        token = request.headers.get(CSRF_HEADER, "")
        expected = request.session.get("csrf", "")
        if not token or not isinstance(expected, str) or not hmac.compare_digest(token, expected):
            log.warning("POST %s by %s without a valid CSRF token refused", request.url.path, user.name)
            raise HTTPException(403, "missing or wrong CSRF token")
        return Actor(user.name, user.role)

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise HTTPException(400, "request body is not JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(400, "request body must be a JSON object")
        return data

    def reason_of(data: dict[str, Any]) -> str:
        reason = data.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 500:
            raise HTTPException(400, "reason must be text of at most 500 characters")
        return reason.strip()

    async def act(request: Request, call: Callable[[Actor, dict[str, Any]], Any]) -> JSONResponse:
        actor = acting_user(request)
        data = await body(request)
        try:
            # the session writes the audit log (SQLite, fsync): off the event loop
            result = await asyncio.to_thread(call, actor, data)
        except ActionRefused as exc:
            return JSONResponse({"detail": str(exc), "seq": exc.seq}, status_code=_STATUS[exc.status])
        except InputError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, **(result or {})})

    # -------------------------------------------------------------------------- routes
    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(f"{static_dir()}/index.html", media_type="text/html")

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "frames": broadcaster.frames_encoded, "viewers": len(broadcaster.viewers)}

    @app.post("/api/login")
    async def login(request: Request) -> JSONResponse:
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(415, "send the login as JSON")
        data = await body(request)
        name, password = data.get("name"), data.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or len(password) > 1024:
            raise HTTPException(400, "name and password are required")
        user = await asyncio.to_thread(users.authenticate, name, password)
        if user is None:
            log.warning("failed console login for %r", name)
            return JSONResponse({"detail": "wrong name or password"}, status_code=401)
        request.session.clear()  # a fresh session: no fixation
        request.session.update({"user": user.name, "csrf": secrets.token_urlsafe(32)})
        log.info("console login: %s (%s)", user.name, user.role)
        return JSONResponse({**_me(user, request.session["csrf"]), **explain_state})

    @app.post("/api/logout")
    def logout(request: Request) -> dict[str, bool]:
        acting_user(request)
        request.session.clear()
        return {"ok": True}

    @app.get("/api/me")
    def me(request: Request) -> dict[str, Any]:
        user = current_user(request)
        return {**_me(user, request.session.get("csrf", "")), "title": title, **explain_state}

    @app.get("/api/state")
    def state(request: Request) -> dict[str, Any]:
        current_user(request)
        return {"state": session.snapshot(), "events": [e.to_dict() for e in session.events()]}

    @app.post("/api/alerts/{alert_id}/acknowledge")
    async def acknowledge(alert_id: int, request: Request) -> JSONResponse:
        def call(actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
            return {"alert": session.acknowledge(alert_id, actor, reason=reason_of(data)).to_dict()}

        return await act(request, call)

    @app.post("/api/pending/{pending_id}/{verb}")
    async def resolve(pending_id: int, verb: str, request: Request) -> JSONResponse:
        if verb not in ("approve", "veto"):
            raise HTTPException(404, "unknown action")

        def call(actor: Actor, data: dict[str, Any]) -> None:
            method = session.approve if verb == "approve" else session.veto
            method(pending_id, actor, reason=reason_of(data))

        return await act(request, call)

    @app.post("/api/pause")
    async def pause(request: Request) -> JSONResponse:
        return await act(request, lambda actor, data: session.pause(actor, reason=reason_of(data)))

    @app.post("/api/resume")
    async def resume(request: Request) -> JSONResponse:
        return await act(request, lambda actor, data: session.resume(actor, reason=reason_of(data)))

    @app.post("/api/autonomy")
    async def autonomy(request: Request) -> JSONResponse:
        def call(actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
            level = AutonomyLevel.parse(data.get("level"))
            return {"level": int(session.set_autonomy(level, actor, reason=reason_of(data)))}

        return await act(request, call)

    @app.post("/api/annotate")
    async def annotate(request: Request) -> JSONResponse:
        def call(actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
            text = data.get("text")
            if not isinstance(text, str) or not text.strip() or len(text) > 2000:
                raise InputError("a note needs text (at most 2000 characters)")
            return {"seq": session.annotate(text.strip(), actor)}

        return await act(request, call)

    @app.post("/api/evidence")
    async def explain(request: Request) -> JSONResponse:
        actor = acting_user(request)
        if explainer is None:
            raise HTTPException(404, explain_unavailable or "this session has no AI tracker to explain")
        frame_id = (await body(request)).get("frame_id")
        if frame_id is not None and (isinstance(frame_id, bool) or not isinstance(frame_id, int)):
            raise HTTPException(400, "frame_id must be an integer frame id")
        try:
            # computed on the explainer's own worker thread: neither this loop nor the treatment loop waits
            result = await asyncio.wrap_future(explainer.request(frame_id, requested_by=actor.name))
        except InputError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=409)
        record = result.record
        return JSONResponse({"ok": True, "seq": result.seq, "url": f"/api/evidence/{result.seq}",
                             "explanation": record.explanation, "caption": record.evidence.caption,
                             "frame_id": result.frame_index})

    @app.get("/api/evidence/{seq}")
    async def evidence(seq: int, request: Request) -> Response:
        current_user(request)
        png = await asyncio.to_thread(_evidence_png, session, seq, explainer)
        return Response(png, media_type="image/png")

    @app.websocket("/ws")
    async def stream(websocket: WebSocket) -> None:
        if not _same_origin(websocket.headers.get("origin"), websocket.headers.get("host")):
            await websocket.close(code=4403)
            return
        name = websocket.session.get("user")
        user = users.get(name) if isinstance(name, str) else None
        if user is None:
            await websocket.close(code=4401)
            return
        await websocket.accept()
        viewer = Viewer(user.name, user.role)
        hello = {
            "type": "hello",
            "user": user.name,
            "role": user.role,
            "title": title,
            "events": [e.to_dict() for e in session.events()],
        }
        await websocket.send_text(json.dumps(hello, default=str))
        await websocket.send_text(broadcaster.state_message())
        viewer.frame = broadcaster.latest_frame
        if broadcaster.latest_scene is not None:
            viewer.queue.append(broadcaster.latest_scene)
        viewer.tool = broadcaster.latest_tool
        broadcaster.viewers.add(viewer)
        viewer.wake.set()
        receiver = asyncio.create_task(_drain(websocket))
        try:
            while not receiver.done():
                waiter = asyncio.create_task(viewer.wake.wait())
                await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                viewer.wake.clear()
                if viewer.overflowed:
                    await websocket.close(code=4008)  # too far behind: let it reconnect fresh
                    return
                while viewer.queue:
                    await websocket.send_text(viewer.queue.popleft())
                frame, viewer.frame = viewer.frame, None
                if frame is not None:
                    await websocket.send_text(frame)
                    viewer.frames_sent += 1
                tool, viewer.tool = viewer.tool, None
                if tool is not None:
                    await websocket.send_text(tool)
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            pass
        finally:
            broadcaster.viewers.discard(viewer)
            receiver.cancel()

    return app


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what a viewer sends, until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message.get("type") == "websocket.disconnect":
                return


def _evidence_png(session: SupervisedSession, seq: int, explainer: Explainer | None) -> bytes:
    """The PNG evidence of audit-log record ``seq``: inline, or a file inside the explainer's folder
    whose SHA-256 still matches the one logged."""
    import hashlib

    from igikit.supervise.records import DecisionRecord

    entry = next(session.audit.records(start_seq=seq), None) if seq >= 1 else None
    record = entry.record if entry is not None and entry.seq == seq else None
    if not isinstance(record, DecisionRecord) or record.evidence is None:
        raise HTTPException(404, f"record {seq} has no evidence")
    evidence = record.evidence
    if evidence.kind == "png":
        return evidence.png_bytes()
    if evidence.kind != "path" or explainer is None:
        raise HTTPException(404, f"record {seq}: the console serves inline and explanation-folder evidence only")
    path = Path(evidence.ref).resolve()
    if not path.is_relative_to(Path(explainer.folder).resolve()) or not path.is_file():
        raise HTTPException(404, f"record {seq}: evidence file not available")
    data = path.read_bytes()
    logged = record.data.get("evidence_sha256")
    if logged is not None and hashlib.sha256(data).hexdigest() != logged:
        raise HTTPException(409, f"record {seq}: the evidence file changed after it was logged")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise HTTPException(415, f"record {seq}: evidence is not a PNG image")
    return data


def _me(user: User, csrf: str) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": user.role,
        "csrf": csrf,
        "permissions": sorted(ROLE_PERMISSIONS.get(user.role, frozenset())),
    }


def _same_origin(origin: str | None, host: str | None) -> bool:
    """No ``Origin`` (same-origin GETs, non-browser clients) or one naming this host."""
    if not origin:
        return True
    if origin == "null" or host is None:
        return False
    return origin.split("://", 1)[-1].rstrip("/") == host
