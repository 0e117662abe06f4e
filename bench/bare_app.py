"""The floor under any answer of an ASGI app: Starlette answering ``GET /healthz`` with 200 and
nothing else, for ``python -m uvicorn bench.bare_app:app`` (``bench.common.bare_starlette``)."""

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def healthz(request):
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/healthz", healthz)])
