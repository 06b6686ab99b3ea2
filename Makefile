# codec12 — `make demo` tokenizes the example speech with the bundled model; `make test` runs the test suite.
# Both set up everything they need on a fresh machine (Debian packages as root, a virtualenv in .venv).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages: sox/ffmpeg (audio tools), codec2 + opus-tools (classical baselines), espeak-ng (phonemes,
# synthetic speech).
SYSDEPS := sox ffmpeg codec2 opus-tools espeak-ng

.PHONY: install sysdeps test test-slow demo lint

install: sysdeps $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# every extra the tests use, at the exact versions they pass with (pyproject.toml states ranges)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[train,eval,onnx,dev,readers]'
	# moshi (for the Mimi original-layout parity test) pins an older torch: install it without its pins
	$(BIN)/python -m pip install -q --no-deps moshi==0.2.13 sentencepiece==0.2.3
	# vllm-omni holds Voxtral TTS's reference codec (tests/test_voxtral.py); its vLLM dependencies are not needed
	$(BIN)/python -m pip install -q --no-deps vllm-omni==0.30.0
	touch $@

sysdeps:
	@missing=""; for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages:$$missing (tests that need them are skipped)"; fi; \
	fi

demo: install
	rm -rf out/demo  # a fresh demo each time (a dataset tokenized by another model is never mixed in)
	$(BIN)/codec12 tokenize examples --out out/demo/tokens
	$(BIN)/codec12 detokenize out/demo/tokens --out out/demo/audio
	@echo "tokens: out/demo/tokens (Parquet shards + codec12_meta.json); decoded audio: out/demo/audio"

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check .
