"""Fixtures that start the real server, with the real embedded model, on a free port."""

from __future__ import annotations

from pathlib import Path

import pytest

from lingting_testkit.corpus import audio_dir
from lingting_testkit.postgres import running_postgres
from lingting_testkit.servers import start_server, stop_server

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    root = audio_dir()
    if root is None:
        pytest.skip("real speech corpus not found: set LINGTING_AUDIO_DIR or put it at ../shared/audio")
    return root


@pytest.fixture(scope="session")
def server():
    """The real server with the default embedded model (whisper-base)."""
    running = start_server("--max-connections", "40", "--max-connections-per-ip", "100")
    yield running
    stop_server(running)
    assert running.process.returncode is not None


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (Debian's, installed by make test) in a temporary directory."""
    try:
        with running_postgres() as running:
            yield running
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL for the tests: {exc}")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
