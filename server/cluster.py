"""Lingting on a Ray cluster (the `cluster` extra).

Two ways to run edges against Recognizer replicas (engines/ray_engine.py):

- As Serve's ingress: `serve deploy deploy/serve.yaml` (or `serve run
  lingting_server.cluster:build`). The Edge deployment runs the same ASGI app
  as lingting-server; Serve's proxies accept the WebSockets and HTTP.
- As plain processes behind any load balancer: `lingting-server --cluster
  ADDRESS` connects to the cluster, uses the recognizer application if one
  runs (deploying it with --replicas if not), and serves as usual.

Either way each edge keeps its batch collector, its streams and its rooms;
edges share a history and rooms through PostgreSQL (--history-db postgresql://)."""

from __future__ import annotations

import asyncio
import logging
import shlex

import ray
from ray import serve

from .assembly import access_policy, assemble, enforce_retention, worker_options
from .edge.app import build_app, finish_streams
from .engines.ray_engine import APP_NAME, DEPLOYMENT, RayEngine, Recognizer
from .logs import setup_logging
from .services.metrics import Metrics
from .services.batching import TextThread
from .settings import Settings, build_parser, load_settings

log = logging.getLogger("lingting.cluster")
NAMESPACE = "lingting"


def recognizer_app(settings: Settings, replicas: int | None):
    """The recognizer application: replicas of the model the settings name
    (None: as many as the Serve config says, or its autoscaling)."""
    cluster = settings.cluster
    if settings.model.engine == "funasr":
        raise ValueError("the recognizer replicas run Whisper: funasr keeps each stream's cache in one process")
    options = {"ray_actor_options": {"num_cpus": cluster.replica_cpus, "num_gpus": cluster.replica_gpus}}
    if replicas is not None:
        options["num_replicas"] = replicas
    return Recognizer.options(**options).bind(worker_options(settings, cpu_threads=max(1, int(cluster.replica_cpus))))


def lanes(settings: Settings, replicas: int | None) -> int:
    """Batches an edge keeps in flight: --model-workers, else one per replica
    (4 when autoscaling decides the count)."""
    return max(1, settings.model.model_workers or replicas or 4)


def cluster_engines(settings: Settings) -> list[RayEngine]:
    """For lingting-server --cluster / --engine ray: engines over the cluster's
    recognizer (one per lane). A running one is used as it is, whichever
    application holds it (deploy/serve.yaml's, or another edge's); with none,
    this edge deploys one with --replicas. Blocks."""
    address = settings.cluster.address
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "", "local") else address, namespace=NAMESPACE,
                 log_to_driver=False, ignore_reinit_error=True)
    found = _running_recognizer()
    if found:
        app, replicas = found
        log.info("using the recognizer of the running application %r (%d replica(s))", app, replicas)
        handle = serve.get_deployment_handle(DEPLOYMENT, app_name=app)
    else:
        replicas = settings.cluster.replicas
        log.info("deploying the recognizer application %r: %d replica(s)", APP_NAME, replicas)
        serve.start(proxy_location="Disabled")     # plain edges need no Serve proxy
        handle = serve.run(recognizer_app(settings, replicas), name=APP_NAME, route_prefix=None)
    return [RayEngine(handle, settings.model.decode_timeout_s, settings.cluster.replica_retry_s)
            for _ in range(lanes(settings, replicas))]


def _running_recognizer() -> tuple[str, int] | None:
    """(application, replicas) of a running Recognizer deployment, ours first."""
    try:
        applications = serve.status().applications
    except Exception:       # Serve not started on this cluster
        return None
    for name in sorted(applications, key=lambda n: n != APP_NAME):
        deployment = applications[name].deployments.get(DEPLOYMENT)
        if deployment is not None and applications[name].status == "RUNNING":
            return name, max(1, deployment.replica_states.get("RUNNING", 0))
    return None


@serve.deployment(name="Edge", max_ongoing_requests=2000, graceful_shutdown_wait_loop_s=2,
                  graceful_shutdown_timeout_s=600, health_check_period_s=10)
@serve.ingress()
class Edge:
    """lingting-server's edge as Serve's ingress: the same app, settings from
    lingting-server's flags (`flags` in the Serve config; host and port are
    Serve's). When Serve stops a replica (a rolling update, scale-down) it
    first takes it out of routing and waits for its open streams to end
    (graceful_shutdown_timeout_s), then the rest are finished as on SIGTERM."""

    async def __init__(self, recognizer, flags: list[str], replicas: int | None = None):
        settings = load_settings(build_parser().parse_args(flags))
        settings.validate()
        setup_logging(settings.log.level, settings.log.format)
        # Serve's proxy (a plain uvicorn) accepts the connections, not EdgeServer: the app still refuses frames
        # over --max-frame-bytes (streams.read_frames), but no request-header timeout applies.
        log.info("edge on Serve's proxy: --handshake-timeout-s does not apply there (it holds a connection that "
                 "never finishes its request, and buffers frames up to 16 MiB before this edge refuses those over "
                 "--max-frame-bytes); put a load balancer with a request-header timeout in front (docs/cluster.md)")
        access, _ = access_policy(settings)
        loop = asyncio.get_running_loop()
        engines = [await loop.run_in_executor(None, RayEngine, recognizer, settings.model.decode_timeout_s,
                                              settings.cluster.replica_retry_s)
                   for _ in range(lanes(settings, replicas))]
        text = TextThread()
        await text.warm_up()
        self.lingting = assemble(settings, engines, text, access, Metrics())
        await self.lingting.start_services()
        history = self.lingting.history
        self.retention = loop.create_task(enforce_retention(history)) if history else None
        self.lingting.ready = True

    def __serve_build_asgi_app__(self):
        return build_app(self.lingting)

    async def __del__(self):
        lingting = self.lingting
        lingting.shutting_down, lingting.ready = True, False
        network = lingting.settings.network
        await finish_streams(lingting, network.shutdown_grace_s, network.last_frames_s)
        lingting.rooms.shutdown()
        await lingting.stop_services()
        await lingting.collector.close()
        if self.retention:
            self.retention.cancel()
        if lingting.history:
            lingting.history.close()


def build(args: dict):
    """The Serve application (import path lingting_server.cluster:build). args:
    flags: lingting-server flags for the edges (a list, or one string);
    replicas: a fixed number of recognizer replicas (leave it out when the
    config's Recognizer deployment sets num_replicas or autoscaling_config)."""
    flags = args.get("flags", [])
    flags = shlex.split(flags) if isinstance(flags, str) else [str(f) for f in flags]
    settings = load_settings(build_parser().parse_args(flags))
    settings.validate()          # its mistakes surface at deploy time, not in each edge replica
    replicas = int(args["replicas"]) if args.get("replicas") is not None else None
    return Edge.bind(recognizer_app(settings, replicas), flags, replicas)
