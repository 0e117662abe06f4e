"""The gunicorn worker class of ``gunicorn.conf.py``: uvicorn (uvloop, httptools) in
gunicorn's process manager, as ``uvicorn-worker`` runs it, with three changes for mcpadmin:

- uvicorn's own access log is off: it writes each path with its query string, and OAuth
  callbacks carry the authorization code there. ``AccessLog`` writes the line instead, with
  the path alone, to gunicorn's access log (text mode; in JSON mode ``requestlog`` writes
  one line per request and gunicorn's access log is off).
- A graceful stop (SIGTERM, or a reload's SIGHUP to the master) ends the held streams at once,
  so their clients reconnect to a worker that stays, instead of holding this one until
  ``graceful_timeout``; requests in flight get the rest of it.
- A stop that outlasts ``graceful_timeout`` cancels what is left a little before gunicorn
  would kill the worker, so the lifespan shutdown (watcher, outbound pools) still runs.
"""

import gc
import logging
import sys
import time

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker


class Worker(UvicornWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # uvicorn writes access lines whenever its access logger has handlers: give it none,
        # and gunicorn's access handlers to ours.
        uvicorn_access = logging.getLogger("uvicorn.access")
        self.access = logging.getLogger("mcpadmin.access")
        self.access.handlers, uvicorn_access.handlers = uvicorn_access.handlers, []
        self.access.setLevel(self.log.access_log.level)
        self.access.propagate = False
        self.config.access_log = False
        self.config.timeout_graceful_shutdown = max(1, self.cfg.graceful_timeout - 2)

    async def _serve(self):
        application = self.wsgi  # gunicorn's name for the loaded app (ASGI here)
        # What the app built to start (modules, models, templates) lives as long as the
        # worker: out of the collector's way, so its full collections stay short.
        gc.collect()
        gc.freeze()
        logged = self.cfg.accesslog and self.access.handlers
        self.config.app = AccessLog(application, self.access) if logged else application
        server = _Server(config=self.config)
        server.on_exit = lambda: _drain(application)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


class _Server(Server):
    on_exit = None

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        if self.on_exit is not None:
            self.on_exit()


def _drain(application):
    """End the held streams of the app (``gateway.app.create_asgi_app``), if it has any."""
    plane = getattr(getattr(application, "application", None), "plane", None)
    if plane is not None:
        plane.hub.drain()


class AccessLog:
    """One line per request: address, method, path without its query, protocol, status,
    bytes and milliseconds."""

    def __init__(self, app, logger):
        self.app, self.logger = app, logger

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.monotonic()
        status, sent = 0, 0

        async def sending(message):
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            self.logger.info(
                '%s "%s %s HTTP/%s" %s %s %.1fms',
                client[0] if client else "-",
                scope["method"],
                scope["path"],
                scope.get("http_version", "1.1"),
                status or "-",
                sent,
                (time.monotonic() - started) * 1000,
            )
