"""A real local Ray cluster for the tests: a head and a second node, each
started by `ray start` as its own processes on this machine, and Lingting's
Serve application deployed from deploy/serve.yaml by `serve run`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml

from .servers import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# RAY_AUTH_MODE: Ray turns token auth on by itself when ~/.ray/auth_token exists (any
# earlier local `ray.init` makes one); this loopback-only test cluster does without.
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0", "RAY_AUTH_MODE": "disabled",
       "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
OBJECT_STORE = str(150 * 1024 * 1024)   # the default (30 % of memory per node) is far more than tests need


@dataclass
class RayCluster:
    address: str        # HOST:PORT of the head's GCS
    folder: str

    def replicas(self, deployment: str = "Recognizer") -> list[psutil.Process]:
        """The live processes of a Serve deployment's replicas (Ray names them in their title)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            if any(f"ServeReplica:lingting:{deployment}" in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        return found


def _ray(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / "ray"), *args], env=ENV, capture_output=True, text=True, timeout=180)
    if check and done.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@contextmanager
def running_ray_cluster(cpus_per_node: int = 2):
    if shutil.which("ray", path=str(BIN)) is None:
        raise RuntimeError("Ray is not installed (make test installs the cluster extra)")
    folder = tempfile.mkdtemp(prefix="lt-ray-")          # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    try:
        _ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus",
             str(cpus_per_node), "--include-dashboard=false", "--disable-usage-stats", "--object-store-memory",
             OBJECT_STORE, "--temp-dir", folder)
        _ray("start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1", "--num-cpus",
             str(cpus_per_node), "--object-store-memory", OBJECT_STORE)
        yield RayCluster(f"127.0.0.1:{port}", folder)
    finally:
        _ray("stop", "--force", check=False)
        shutil.rmtree(folder, ignore_errors=True)


def serve_config(port: int, flags: list[str], recognizers: int, edges: int = 1) -> dict:
    """deploy/serve.yaml as shipped, for this machine: one proxy on 127.0.0.1:port,
    the recognizers' autoscaling held at a count (one per node), the tests' flags."""
    config = yaml.safe_load((REPO / "deploy" / "serve.yaml").read_text())
    config["proxy_location"] = "HeadOnly"          # both nodes are this host: one proxy, one port
    config["http_options"].update(host="127.0.0.1", port=port)
    app = config["applications"][0]
    app["args"] = {"flags": flags}
    for deployment in app["deployments"]:
        if deployment["name"] == "Recognizer":      # its autoscaling, held at this count
            deployment["autoscaling_config"].update(min_replicas=recognizers, max_replicas=recognizers)
            deployment["max_replicas_per_node"] = 1
        else:
            deployment.update(num_replicas=edges)
            deployment["ray_actor_options"]["num_cpus"] = 0.1
    return config


def serve_run(cluster: RayCluster, config: dict, timeout: float = 300) -> str:
    """Deploy with `serve run --non-blocking`; the app's http:// address once /health answers 200."""
    path = Path(cluster.folder) / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([str(BIN / "serve"), "run", "--address", cluster.address, "--non-blocking", str(path)],
                          env=ENV, capture_output=True, text=True, timeout=timeout, cwd=cluster.folder)
    if done.returncode != 0:
        raise RuntimeError(f"serve run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    http = f"http://127.0.0.1:{config['http_options']['port']}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(http + "/health", timeout=5).status_code == 200:
                return http
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the Serve application did not become healthy")
