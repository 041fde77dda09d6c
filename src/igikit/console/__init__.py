"""The supervisor's web console: FastAPI + WebSocket + one browser page (``igikit console``).

Light to import: the web stack (FastAPI, uvicorn) loads only when a console is built or served.

* :mod:`igikit.console.users` — users, roles and argon2 password hashes (``igikit users``);
* :mod:`igikit.console.app` — :func:`~igikit.console.app.create_app`, the routes and the WebSocket;
* :mod:`igikit.console.broadcast` — frames encoded once, off the treatment loop, sent latest-wins;
* :mod:`igikit.console.feed` — a recorded session or a live stream graph feeding a console;
* :mod:`igikit.console.server` — :class:`~igikit.console.server.ConsoleServer`, uvicorn in a thread.
"""
