"""Benchmarks, run from the repo root as `python -m bench.<name>`.

They measure with what the tests use (the corpus and its scoring, the server
launcher, the generated conversations and callouts), so that code lives once,
in tests/lingting_testkit/, and tests never import from here. pytest puts
tests/ on the path for the tests; `python -m bench.x` does not, so this does."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
