# syntax=docker/dockerfile:1
# ReefLab hub: JupyterHub + configurable-http-proxy + the reeflab package (spawner, login,
# profiles), configured by hub_config/jupyterhub_config.py. Kubernetes mode by default.
#
#   docker build -f images/hub.Dockerfile -t quay.io/reeflab/hub:0.1.0 .
#
# Runtime settings are REEFLAB_* environment variables read by reeflab.hub.config. The
# working directory /srv/reeflab/state is the hub's state (JupyterHub's sqlite database and
# cookie secret unless configured elsewhere, first-use passwords): mount a volume there.
# Mount a ConfigMap over /srv/reeflab/hub_config to change the profiles, or to add the
# deployment's own settings below configure(c) in jupyterhub_config.py, without a rebuild.

# --- configurable-http-proxy: the version package-lock.json pins --------------------------
FROM node:22.22.2-bookworm-slim AS proxy
RUN npm install --global --no-audit --no-fund configurable-http-proxy@5.3.0 \
    && npm cache clean --force

# --- Python environment: hub packages + reeflab, constrained by the lock file -------------
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/reeflab
ENV PATH=/opt/reeflab/bin:$PATH
WORKDIR /src
COPY requirements/constraints.txt requirements/
# Names only: every version comes from requirements/constraints.txt (-c), the lock file
# the whole stack is tested with; tests/test_images.py checks that every install uses it.
RUN pip install --no-cache-dir -c requirements/constraints.txt \
        jupyterhub \
        jupyterhub-kubespawner \
        jupyterhub-firstuseauthenticator \
        jupyterhub-idle-culler \
        oauthenticator
COPY setup.py README.md ./
COPY server_extension/ server_extension/
COPY kernels/ kernels/
COPY hub_config/ hub_config/
RUN pip install --no-cache-dir -c requirements/constraints.txt . \
    && python -c "import reeflab.hub.spawners, kubespawner, oauthenticator.generic, firstuseauthenticator, jupyterhub_idle_culler"

# --- runtime --------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="reeflab-hub" \
      org.opencontainers.image.description="ReefLab JupyterHub: login, profiles, KubeSpawner, proxy" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.source="https://github.com/reeflab/reeflab" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm" \
      io.reeflab.image="quay.io/reeflab/hub"

RUN groupadd --gid 1000 reeflab \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin reeflab \
    && mkdir -p /srv/reeflab/state \
    && chown reeflab:reeflab /srv/reeflab/state \
    && chmod 0700 /srv/reeflab/state

COPY --from=proxy /usr/local/bin/node /usr/local/bin/node
COPY --from=proxy /usr/local/lib/node_modules/configurable-http-proxy /usr/local/lib/node_modules/configurable-http-proxy
RUN ln -s ../lib/node_modules/configurable-http-proxy/bin/configurable-http-proxy /usr/local/bin/configurable-http-proxy \
    && configurable-http-proxy --version
COPY --from=build /opt/reeflab /opt/reeflab
COPY hub_config/ /srv/reeflab/hub_config/

ENV PATH=/opt/reeflab/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    REEFLAB_MODE=kubernetes \
    REEFLAB_IP=0.0.0.0 \
    REEFLAB_PORT=8000 \
    REEFLAB_STATE_DIR=/srv/reeflab/state \
    REEFLAB_PROFILES_FILE=/srv/reeflab/hub_config/profiles.yaml \
    YOLO_OFFLINE=1 \
    MLFLOW_DISABLE_TELEMETRY=true

WORKDIR /srv/reeflab/state
USER 1000:1000
# 8000: the proxy (users); 8081: the hub API (proxy, user pods, services)
EXPOSE 8000 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:8081' + os.environ.get('REEFLAB_BASE_URL', '/').rstrip('/') + '/hub/health', timeout=4)"]
CMD ["jupyterhub", "-f", "/srv/reeflab/hub_config/jupyterhub_config.py"]
