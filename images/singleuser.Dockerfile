# syntax=docker/dockerfile:1
# ReefLab single-user server, CPU: JupyterLab + the whole ReefLab stack (requirements/) +
# the reeflab package with its prebuilt lab extension, kernel spec and hardware profiles.
# Spawned by KubeSpawner as `jupyterhub-singleuser`, uid 1000 (jovyan), in /home/jovyan.
#
#   docker build -f images/singleuser.Dockerfile -t quay.io/reeflab/singleuser:0.1.0 .
#
# images/singleuser-cuda.Dockerfile is the same image with CUDA torch wheels.

# --- node, for the lab extension build -----------------------------------------------------
FROM node:22.22.2-bookworm-slim AS node

# --- lab extension: `npm ci && npm run build`, as in a checkout (Makefile) ------------------
# `jupyter labextension build` needs node and the jupyterlab Python package side by side.
FROM python:3.11.14-slim-bookworm AS labextension
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && node --version && npm --version
WORKDIR /src
COPY requirements/constraints.txt requirements/
RUN pip install --no-cache-dir -c requirements/constraints.txt jupyterlab
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY labextension/tsconfig.json labextension/
COPY labextension/src/ labextension/src/
COPY labextension/style/ labextension/style/
RUN npm run build \
    && test -f server_extension/reeflab/labextension/package.json

# --- the single-user image ------------------------------------------------------------------
# docker-stacks foundation: jovyan (uid 1000, gid 100), conda Python 3.11 in /opt/conda (the
# Python the lock file was made with), tini + start.sh as entrypoint, fix-permissions; and no
# Jupyter packages of its own, so the environment is exactly the lock file's (base-notebook
# would bring conda's jupyterlab/notebook/jupyterhub pins to fight with). 2024-10-14 is among
# the last 3.11 builds before docker-stacks moved to 3.12 (2024-10-23); date tags never move.
FROM quay.io/jupyter/docker-stacks-foundation:2024-10-14
LABEL org.opencontainers.image.title="reeflab-singleuser" \
      org.opencontainers.image.description="ReefLab single-user JupyterLab server (CPU)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.source="https://github.com/reeflab/reeflab" \
      org.opencontainers.image.base.name="quay.io/jupyter/docker-stacks-foundation:2024-10-14" \
      io.reeflab.image="quay.io/reeflab/singleuser"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    YOLO_OFFLINE=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1

# jovyan owns ${CONDA_DIR} in the base image: install as that user.
USER 1000

# 1. the torch/torchvision pair first, CPU wheels (the +cpu builds satisfy torch==2.14.1)
COPY --chown=1000:100 requirements/torch.txt requirements/constraints.txt /tmp/reeflab/requirements/
RUN pip install --no-cache-dir \
        --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple \
        -c /tmp/reeflab/requirements/constraints.txt \
        -r /tmp/reeflab/requirements/torch.txt \
    && fix-permissions "${CONDA_DIR}" \
    && fix-permissions "/home/${NB_USER}"

# 2. the whole stack, constrained by the lock file (torch stays the CPU build installed above)
COPY --chown=1000:100 requirements/platform.txt /tmp/reeflab/requirements/
RUN pip install --no-cache-dir \
        -c /tmp/reeflab/requirements/constraints.txt \
        -r /tmp/reeflab/requirements/platform.txt \
    && fix-permissions "${CONDA_DIR}" \
    && fix-permissions "/home/${NB_USER}"

# 3. reeflab with the lab extension built above: its data files land under sys.prefix
#    (${CONDA_DIR}): share/jupyter/labextensions/reeflab, share/jupyter/kernels/reeflab-python,
#    etc/jupyter/jupyter_server_config.d/reeflab.json and etc/reeflab/profiles.yaml.
COPY --chown=1000:100 setup.py README.md /tmp/reeflab/
COPY --chown=1000:100 server_extension/ /tmp/reeflab/server_extension/
COPY --chown=1000:100 kernels/ /tmp/reeflab/kernels/
COPY --chown=1000:100 hub_config/ /tmp/reeflab/hub_config/
COPY --chown=1000:100 --from=labextension /src/server_extension/reeflab/labextension/ /tmp/reeflab/server_extension/reeflab/labextension/
RUN pip install --no-cache-dir -c /tmp/reeflab/requirements/constraints.txt /tmp/reeflab \
    && rm -rf /tmp/reeflab \
    && fix-permissions "${CONDA_DIR}" \
    && fix-permissions "/home/${NB_USER}" \
    && jupyterhub-singleuser --version \
    && test -f "${CONDA_DIR}/etc/reeflab/profiles.yaml" \
    && test -f "${CONDA_DIR}/share/jupyter/labextensions/reeflab/package.json" \
    && test -f "${CONDA_DIR}/share/jupyter/kernels/reeflab-python/kernel.json" \
    && jupyter server extension list 2>&1 | grep -E "reeflab.*enabled" \
    && python -c "import torch, torchvision, reeflab, reeflab.profiles; assert torch.version.cuda is None, 'expected the CPU torch build'; print('torch', torch.__version__)"

# KubeSpawner: cmd jupyterhub-singleuser (passed as args to the base's tini + start.sh
# entrypoint), uid 1000, working_dir /home/jovyan, port 8888.
WORKDIR /home/jovyan
EXPOSE 8888
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.parse as p, urllib.request as r; u = p.urlsplit(os.environ.get('JUPYTERHUB_SERVICE_URL', 'http://127.0.0.1:8888/')); r.urlopen('http://127.0.0.1:%s%s/api' % (u.port or 8888, u.path.rstrip('/')), timeout=4)"]
CMD ["jupyterhub-singleuser"]
