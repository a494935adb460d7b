# ReefLab: `make up` installs everything and starts the platform; `make test` runs the tests.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
# pip prints a warning per missing local index folder; keep the real messages
PIP := quiet_pip() { $(PY) -m pip "$$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; }; }; quiet_pip
SITE := $(VENV)/lib/python3.11/site-packages
LABEXT_BUILD := server_extension/reeflab/labextension
# Browser tests drive Debian's Chromium through Playwright (never `playwright install`)
CHROMIUM := /usr/bin/chromium
# rclone mounts (storage) need FUSE 3's fusermount3
FUSERMOUNT := /usr/bin/fusermount3
# serverless jobs run in bubblewrap sandboxes (the engine starts no worker without it)
BWRAP := /usr/bin/bwrap
# Label Studio on PostgreSQL (tests/test_annotation_postgres.py) runs a real server: Debian's
POSTGRES := /usr/bin/pg_ctlcluster
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export YOLO_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: up test install install-test fuse sandbox reachable lint bench lock clean fish-weights fish-classifier-weights

up: install .venv-labelstudio/.stamp fuse sandbox reachable
	$(VENV)/bin/reeflab up

# Storage mounts need FUSE 3; without it (no root to install it) ReefLab says so and copies instead.
fuse:
	@test -x $(FUSERMOUNT) || { [ "$$(id -u)" = 0 ] && $(MAKE) --no-print-directory $(FUSERMOUNT); } || \
	  echo "note: fuse3 is not installed (sudo apt-get install fuse3): storage mounts fall back to copy/sync"
	@# users' accounts mount through fusermount3: /dev/fuse is 0666 on Debian, some containers make it 0600
	@[ "$$(id -u)" != 0 ] || [ ! -c /dev/fuse ] || chmod 0666 /dev/fuse

sandbox:
	@test -x $(BWRAP) || { [ "$$(id -u)" = 0 ] && $(MAKE) --no-print-directory $(BWRAP); } || \
	  echo "note: bubblewrap is not installed (sudo apt-get install bubblewrap): serverless services cannot run until it is"

# As root, each user's server runs under their own OS account, with ReefLab's Python from .venv:
# those accounts must be able to pass through (o+x, not list) the folders above it.
reachable: install
	@[ "$$(id -u)" != 0 ] || $(PY) -m reeflab.accounts open-path

test: install install-test fuse reachable
	$(VENV)/bin/ruff check server_extension hub_config tests bench
	npm test --silent
	$(PY) -m pytest tests --ignore=tests/browser
	@# Playwright's sync API keeps its own event loop for the session: browser tests run apart
	$(PY) -m pytest tests/browser

install: $(VENV)/.platform.stamp $(VENV)/.reeflab.stamp

install-test: $(VENV)/.test.stamp .venv-oidc/.stamp .venv-labelstudio/.stamp $(CHROMIUM) $(FUSERMOUNT) $(BWRAP) $(POSTGRES)

$(VENV)/.torch.stamp: requirements/torch.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip wheel setuptools
	$(PIP) install -q -r requirements/torch.txt
	touch $@

$(VENV)/.platform.stamp: $(VENV)/.torch.stamp requirements/platform.txt requirements/no-deps.txt requirements/constraints.txt
	$(PIP) install -q -c requirements/constraints.txt -r requirements/platform.txt
	$(PIP) install -q --no-deps -c requirements/constraints.txt -r requirements/no-deps.txt
	touch $@

$(VENV)/.test.stamp: $(VENV)/.platform.stamp requirements/test.txt
	$(PIP) install -q -c requirements/constraints.txt -r requirements/test.txt
	touch $@

# The OIDC test provider needs its own environment (its dependencies clash with the stack).
.venv-oidc/.stamp:
	python3 -m venv .venv-oidc
	quiet_pip() { .venv-oidc/bin/pip "$$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; }; }; \
	  quiet_pip install -q "oidc-provider-mock>=0.3,<0.4"
	touch $@

# Label Studio (annotation): its own environment (its Django stack clashes with the platform's); each user's
# server starts their own from it (reeflab/annotation/labelstudio.py finds it beside .venv)
.venv-labelstudio/.stamp:
	python3 -m venv .venv-labelstudio
	quiet_pip() { .venv-labelstudio/bin/pip "$$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; }; }; \
	  quiet_pip install -q "label-studio==1.23.2"
	touch $@

$(FUSERMOUNT):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse3 >/dev/null

$(BWRAP):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null

$(POSTGRES):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null

$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(LABEXT_BUILD)/package.json: node_modules/.stamp $(VENV)/.platform.stamp $(wildcard labextension/src/*) $(wildcard labextension/src/api/*) labextension/style/index.css labextension/tsconfig.json
	npm run --silent build:lib
	npm run --silent build:labextension >/dev/null
	touch $@

# The package is installed editable; its data files (lab extension, server config, kernel) are
# linked or copied into the environment here, since editable installs skip data_files.
$(VENV)/.reeflab.stamp: $(VENV)/.platform.stamp setup.py $(LABEXT_BUILD)/package.json kernels/reeflab-python/kernel.json server_extension/jupyter-config/jupyter_server_config.d/reeflab.json server_extension/jupyter-config/lab/overrides.json
	$(PIP) install -q --no-deps --no-build-isolation -e .
	mkdir -p $(VENV)/share/jupyter/labextensions $(VENV)/etc/jupyter/jupyter_server_config.d
	ln -sfn $(CURDIR)/$(LABEXT_BUILD) $(VENV)/share/jupyter/labextensions/reeflab
	cp server_extension/jupyter-config/jupyter_server_config.d/reeflab.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	@# no "get Jupyter news?" prompt in every new user's lab (and no calls out for it)
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp server_extension/jupyter-config/lab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(VENV)/bin/jupyter kernelspec install --sys-prefix kernels/reeflab-python >/dev/null
	touch $@

lint: install-test
	$(VENV)/bin/ruff check server_extension hub_config tests bench
	$(VENV)/bin/ruff format --check server_extension hub_config tests bench

bench: install install-test
	$(PY) bench/spawn_time.py
	$(PY) bench/catalog_search.py
	$(PY) bench/deployments.py
	$(PY) bench/serverless.py --module yolo-detector
	$(PY) bench/serverless.py --module fish-detector
	$(PY) bench/fish_precision.py
	$(PY) bench/training_throughput.py
	$(PY) bench/storage.py
	$(PY) bench/federated.py
	$(PY) bench/distributed.py
	$(PY) bench/monitoring.py

# Re-train the fish detector's shipped weights (CPU, about 35 min on 2 cores; see weights/TRAINING.md): from
# scratch on generated fish scenes, then fine-tuned with fish-free scenes and photos as negatives
fish-weights: install
	base=$$(mktemp -d) && \
	$(PY) -m reeflab.modules.fish_detector.train_weights --out $$base/fish-yolo.pt --samples-dir $$base/samples && \
	$(PY) -m reeflab.modules.fish_detector.train_weights --init $$base/fish-yolo.pt --epochs 12 \
		--n-train 600 --n-empty 150 --n-empty-val 20 --negative-crops 35; \
	status=$$?; rm -rf $$base; exit $$status

# Re-train the fish classifier's shipped weights on generated crops (CPU, about 5 min; see its weights/TRAINING.md)
fish-classifier-weights: install
	nice -n 10 $(PY) -m reeflab.modules.fish_classifier.train_weights

# Re-pin every package after changing requirements/*.txt
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^reeflab' | sed '1i # pip freeze of a working environment (make lock); every install is constrained to it.' > requirements/constraints.txt

clean:
	rm -rf $(VENV) .venv-oidc .venv-labelstudio node_modules $(LABEXT_BUILD) labextension/lib .reeflab
