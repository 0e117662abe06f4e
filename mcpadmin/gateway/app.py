"""The one ASGI application: the agent data plane on the event loop, the admin app beside it.

```
request ─▶ Guard: bodies read whole on the loop, within time and size
             ├─▶ /agents/<id>/mcp: the data plane (Starlette, async)
             └─▶ everything else: Flask, through a2wsgi, on ADMIN_THREADS threads
```

Each process (uvicorn worker) has one ``Plane``: the pool of threads for the data plane's
blocking work, the async outbound client with its keep-alive pools, the held streams and
their watcher, and the calls running here (for a legacy cancellation).
"""

import asyncio
import contextlib

from a2wsgi import WSGIMiddleware
from starlette.routing import Route, Router

from .. import create_app, security
from ..services import webhooks
from . import blocking, outbound, streams, transport
from .guard import AGENT_ENDPOINT, Guard


class Plane:
    """One process's data plane for one Flask app (its configuration and database)."""

    def __init__(self, app):
        self.app = app
        self.config = app.config
        self.pool = blocking.Pool(app, app.config["GATEWAY_THREADS"])
        self.run = self.pool.run
        self.hub = streams.Hub(self.pool, app.config)
        self.origins = security.allowed_origins(
            app.config["PUBLIC_BASE_URL"], app.config["EXTRA_HOSTS"]
        )
        self.http = None
        self.running: dict = {}  # (session digest, request id) → relay.CallResponse
        self._loop = None

    def started(self):
        """Start this process's watcher and outbound client on the running loop (once; a
        server that skips the lifespan protocol gets them on the first request)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        self.http = outbound.client(self.app)
        self.hub.start(self.http)
        webhooks.start(self.app)  # the notifier thread, unless NOTIFY_INTERVAL is 0

    async def stop(self):
        webhooks.stop(self.app)
        await self.hub.stop()
        await outbound.close_clients()
        self.http, self._loop = None, None

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        self.started()
        try:
            yield
        finally:
            await self.stop()


class Application:
    """Routes a request to the data plane or the admin app; lifespan events to the plane."""

    def __init__(self, flask_app):
        self.flask_app = flask_app
        self.plane = Plane(flask_app)
        plane = self.plane

        async def endpoint(request):
            return await transport.endpoint(plane, request)

        route = Route("/agents/{agent_id:int}/mcp", endpoint, methods=["GET", "POST", "DELETE"])
        # Starlette's router alone: the endpoint answers its own errors, so the application's
        # error and exception middleware would only add two layers to every request.
        self.data_plane = Router(routes=[route], lifespan=plane.lifespan)
        self.admin = WSGIMiddleware(flask_app, workers=flask_app.config["ADMIN_THREADS"])

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not AGENT_ENDPOINT.match(scope["path"]):
            return await self.admin(scope, receive, send)
        return await self.data_plane(scope, receive, send)


def create_asgi_app(flask_app=None, **settings):
    """The ASGI application around ``flask_app`` (default: ``create_app(**settings)``, which
    checks the configuration and upgrades the schema)."""
    flask_app = flask_app or create_app(**settings)
    application = Application(flask_app)
    guarded = Guard(application, flask_app.config)
    guarded.application = application
    return guarded
