"""Blocking work of the data plane, off the event loop: database statements, a token refresh
under its cross-process lock, the synchronous MCP client when an upstream must be probed.

``run`` sends a function to a bounded pool of threads (``GATEWAY_THREADS``) and runs it in
the Flask app's context, so the services (``services/``) work unchanged: ``db.session`` is the
thread's own for the length of the call and is removed afterwards (no connection is held
between calls), and ``current_app.config`` is the app's. The request id travels in a context
variable that the thread inherits (``requestlog.current``).
"""

import functools

import anyio
import anyio.to_thread

from ..extensions import db


class Pool:
    """Threads for one app's blocking work; at most ``size`` at once, the rest queue."""

    def __init__(self, app, size: int):
        self.app = app
        self.limiter = anyio.CapacityLimiter(size)

    async def run(self, function, *args, **kwargs):
        """``function(*args, **kwargs)`` in a pool thread, inside the app's context; its
        return value, or its exception. A cancelled caller stops waiting; the function still
        runs to the end in its thread (a statement is never cut in half)."""
        call = functools.partial(self._call, function, args, kwargs)
        # anyio runs it in a copy of this task's context variables (the request id).
        return await anyio.to_thread.run_sync(call, limiter=self.limiter)

    def _call(self, function, args, kwargs):
        with self.app.app_context():
            try:
                return function(*args, **kwargs)
            finally:
                db.session.remove()
