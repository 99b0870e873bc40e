# The image of the CCI workers: `cci` with the package's exact pins, the reference data and the
# Avro contracts. One image serves every stage (`cci worker --stage NAME`), the clock, the COP
# simulator and the topic administration; deploy/compose.yaml runs it that way.
#
#   docker build -t cci-streams:0.1.0 .
#
# Checked offline by tests/unit/test_containers.py (hadolint, non-root user, paths that match the
# settings of streams/config.py); no test builds it.

# An exact tag rather than a digest: the tag is what can be checked against the pins of this
# repository without a registry. Python 3.11 is the version the test suite runs on.
FROM python:3.11.14-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

FROM base AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# A virtual environment is one directory that the runtime stage copies whole, without pip or the
# build dependencies left behind in it.
RUN python -m venv /opt/venv
WORKDIR /src
# README.md is the package's long description: the build reads it.
COPY pyproject.toml README.md ./
COPY streams ./streams
# Wheels only: the slim image has no compiler, and a dependency that would need one must fail the
# build here rather than surprise the runtime. Not editable, so /src is not needed after.
RUN /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: .

FROM base AS runtime
LABEL org.opencontainers.image.title="cci-streams" \
      org.opencontainers.image.description="CCI clearance pipeline workers (Kafka, Faust)" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed UID, so that volumes and a Kubernetes securityContext (runAsUser, fsGroup) can name it.
RUN groupadd --system --gid 10001 cci \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/cci --no-create-home \
       --shell /usr/sbin/nologin cci \
    && mkdir -p /var/lib/cci \
    && chown 10001:10001 /var/lib/cci
COPY --from=build /opt/venv /opt/venv
# Owned by root and read-only to the workers: reference data is checksummed at load, and the
# schemas are the published contracts.
COPY reference /opt/cci/reference
COPY schemas /opt/cci/schemas
# The package is installed into site-packages, so the defaults of streams/config.py, relative to
# a source checkout, point nowhere: every path is set. The web server binds every interface so
# that Prometheus and the status query reach it from other containers.
ENV PATH=/opt/venv/bin:$PATH \
    CCI_REFERENCE_DIR=/opt/cci/reference \
    CCI_SCHEMAS_DIR=/opt/cci/schemas \
    CCI_STATE_DIR=/var/lib/cci \
    CCI_WEB_HOST=0.0.0.0 \
    CCI_WEB_PORT=6066 \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /var/lib/cci
USER 10001:10001
# The worker's HTTP port: /metrics and, on the decision stage, GET /declarations/{mrn}.
EXPOSE 6066
# No HEALTHCHECK here: the same image runs commands that serve no HTTP (the clock, the COP
# simulator, `topics create`), which an image-wide probe would mark unhealthy. deploy/compose.yaml
# probes the workers.
ENTRYPOINT ["cci"]
CMD ["--help"]
