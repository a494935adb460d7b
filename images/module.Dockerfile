# syntax=docker/dockerfile:1
# Runtime of one ReefLab AI module (a DEEPaaS v2 model, entry point group `deepaas.v2.model`)
# served by `deepaas-run` on port 5000: the image of a dedicated deployment.
#
#   docker build -f images/module.Dockerfile \
#       --build-arg MODULE_PACKAGE=<pip requirement> [--build-arg MODULE_NAME=<entry point>] \
#       -t quay.io/reeflab/module-<name>:<version> .
#
# MODULE_PACKAGE (required) is anything pip installs, resolved in a copy of this checkout:
#   "."                       ReefLab's built-in modules (the reeflab package)
#   "my-module==1.2.0"        a module from the package index
#   "https://host/org/my-module/archive/v1.2.0.tar.gz"   (a source archive; there is no git)
# MODULE_NAME picks one model when the package registers several (DEEPAAS_V2_MODEL);
# empty serves them all.
# TORCH_INDEX_URL: CPU torch wheels by default; https://pypi.org/simple gets the CUDA ones.
# Every install is constrained by requirements/constraints.txt, as in the notebooks, so a
# module behaves in its deployment exactly as in the user's server.

ARG MODULE_PACKAGE=""
ARG MODULE_NAME=""
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# --- Python environment -----------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm AS build
ARG MODULE_PACKAGE
ARG MODULE_NAME
ARG TORCH_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN test -n "${MODULE_PACKAGE}" \
        || { echo "set --build-arg MODULE_PACKAGE=<pip requirement of the module>" >&2; exit 1; } \
    && python -m venv /opt/module
ENV PATH=/opt/module/bin:$PATH
WORKDIR /src
# the torch/torchvision pair first, as everywhere in ReefLab
COPY requirements/torch.txt requirements/constraints.txt requirements/
RUN pip install --no-cache-dir \
        --index-url "${TORCH_INDEX_URL}" \
        --extra-index-url https://pypi.org/simple \
        -c requirements/constraints.txt \
        -r requirements/torch.txt
COPY setup.py README.md ./
COPY server_extension/ server_extension/
COPY kernels/ kernels/
COPY hub_config/ hub_config/
# the package must register a DEEPaaS v2 model (the one MODULE_NAME names, if set)
RUN pip install --no-cache-dir -c requirements/constraints.txt deepaas "${MODULE_PACKAGE}" \
    && deepaas-run --help > /dev/null \
    && python -c "import sys; from importlib.metadata import entry_points; names = sorted(e.name for e in entry_points(group='deepaas.v2.model')); print('deepaas.v2.model:', names); sys.exit(0 if names and (not sys.argv[1] or sys.argv[1] in names) else 'no such DEEPaaS v2 model in ${MODULE_PACKAGE}')" "${MODULE_NAME}"

# --- runtime ----------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm
ARG MODULE_PACKAGE
ARG MODULE_NAME
LABEL org.opencontainers.image.title="reeflab-module" \
      org.opencontainers.image.description="ReefLab AI module served by deepaas-run (DEEPaaS v2 API) on port 5000" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.source="https://github.com/reeflab/reeflab" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm" \
      io.reeflab.image="quay.io/reeflab/module" \
      io.reeflab.module.package="${MODULE_PACKAGE}" \
      io.reeflab.module.name="${MODULE_NAME}"

RUN useradd --uid 1000 --gid 100 --create-home --home-dir /home/module --shell /usr/sbin/nologin module \
    && mkdir -p /srv/module \
    && chown 1000:100 /srv/module
COPY --from=build /opt/module /opt/module

ENV PATH=/opt/module/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DEEPAAS_V2_MODEL=${MODULE_NAME} \
    YOLO_OFFLINE=1 \
    YOLO_CONFIG_DIR=/home/module/.config/Ultralytics \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1

WORKDIR /srv/module
USER 1000:100
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/v2/models/', timeout=4)"]
CMD ["deepaas-run", "--listen-ip", "0.0.0.0", "--listen-port", "5000"]
