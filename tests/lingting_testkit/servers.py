"""The real server in a subprocess, with the real embedded model, on a free port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningServer:
    url: str          # ws://.../v1/stream
    http: str         # http://host:port
    process: subprocess.Popen
    log: deque
    history_db: str | None = None

    def log_text(self) -> str:
        return "\n".join(self.log)


def free_port() -> int:
    """A port of 127.0.0.1 free now (for a server the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str, timeout: float = 180, env: dict | None = None) -> RunningServer:
    """The server in a subprocess; its history goes to a fresh temp file
    unless args name one."""
    if "--history-db" not in args:
        args = (*args, "--history-db", os.path.join(tempfile.mkdtemp(prefix="lingting-test-"), "history.sqlite3"))
    history_db = args[args.index("--history-db") + 1]
    cmd = [sys.executable, "-m", "lingting_server", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO,
                            env={**os.environ, **(env or {})})
    log: deque = deque(maxlen=2000)
    ready = threading.Event()
    found: dict = {}

    def pump():
        for line in proc.stderr:
            log.append(line.rstrip())
            m = re.search(r"ready: (wss?://[^\s\"]+)", line)
            if m and not ready.is_set():
                found["url"] = m.group(1)
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.2):
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not become ready:\n" + "\n".join(log))
    if "url" not in found:
        proc.kill()
        raise RuntimeError("server exited before it was ready:\n" + "\n".join(log))
    url = found["url"]
    http = url.replace("wss://", "https://").replace("ws://", "http://").rsplit("/v1/", 1)[0]
    return RunningServer(url, http, proc, log,
                         None if history_db == "off" else history_db)


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()
