# syntax=docker/dockerfile:1
# The operator image, for those who build with Docker. hack/images/build-operator-image.sh builds
# the equivalent image without Docker or a registry (`make image`): Debian bookworm, the project
# in a virtualenv at /opt/steprun, uid 65532, the same entrypoint.
#
#   docker build -t registry.example/steprun/operator:0.1.0 .
#   helm install steprun helm/steprun -n steprun-system --create-namespace \
#     --set image.repository=registry.example/steprun/operator
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# Installers are not needed at run time, nor kubernetes' asyncio copy of its client (the operator
# uses kubernetes_asyncio).
RUN python -m venv /opt/steprun \
 && /opt/steprun/bin/pip install --no-cache-dir --disable-pip-version-check . \
 && /opt/steprun/bin/pip uninstall --yes --disable-pip-version-check pip setuptools \
 && rm -rf /opt/steprun/lib/python3.11/site-packages/kubernetes/aio

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 65532 steprun \
 && useradd --uid 65532 --gid 65532 --create-home --home-dir /home/steprun \
      --shell /usr/sbin/nologin steprun
COPY --from=build /opt/steprun /opt/steprun
ENV PATH=/opt/steprun/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
WORKDIR /home/steprun
# Metrics (STEPRUN_METRICS_PORT) and kopf's liveness endpoint (STEPRUN_HEALTH_PORT).
EXPOSE 8080 8081
# Configuration comes from STEPRUN_* environment variables (the chart sets them).
ENTRYPOINT ["/opt/steprun/bin/python", "-m", "steprun.handlers.main"]
