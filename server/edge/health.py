"""Health checks and Prometheus metrics: no key needed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .responses import JSON


async def health(request: Request) -> Response:
    lingting = request.app.state.lingting
    return JSON(lingting.health(), 200 if lingting.ready else 503)


async def live(request: Request) -> Response:
    return JSON({"status": "alive"})


async def ready(request: Request) -> Response:
    ok = request.app.state.lingting.ready
    return JSON({"status": "ready" if ok else "not_ready"}, 200 if ok else 503)


async def metrics(request: Request) -> Response:
    lingting = request.app.state.lingting
    m = lingting.metrics
    for lane, depth in lingting.collector.queue_depth.items():
        m.queue_depth.labels(lane).set(depth)
    for mode in ("stream", "offline"):
        m.streams.labels(mode).set(sum(1 for s in lingting.streams.values() if s.session.mode == mode))
    m.worker_restarts.set(lingting.collector.worker_restarts)
    return Response(m.render(), media_type=m.content_type)


routes = [
    Route("/health", health),
    Route("/health/live", live),
    Route("/health/ready", ready),
    Route("/metrics", metrics),
]
