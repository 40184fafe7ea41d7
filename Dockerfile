# p1-exporter container: a slim Python image, the exporter in a venv, running as a non-root user.
#
#   docker build -t p1-exporter .
#   docker run --rm -p 9357:9357 p1-exporter --demo
#   docker run -d --name p1-exporter -p 9357:9357 \
#       --device /dev/ttyUSB0:/dev/ttyUSB0 --group-add dialout \
#       p1-exporter --device /dev/ttyUSB0
#
# --group-add dialout uses the container's dialout group (gid 20, as on Debian and Ubuntu
# hosts). Elsewhere pass the gid that owns the device on the host:
# --group-add "$(stat -c %g /dev/ttyUSB0)". Settings also come from P1_EXPORTER_* variables
# (docker run -e P1_EXPORTER_DEVICE=/dev/ttyUSB0 ...).

ARG PYTHON_VERSION=3.12

# Stage 1: build the wheel and install it, with its dependencies and the crypto extra
# (encrypted meters: Luxembourg, Austria, Denmark), into /opt/p1-exporter.
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY p1_exporter ./p1_exporter
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/p1-exporter \
 && for wheel in /wheels/*.whl; do /opt/p1-exporter/bin/pip install "$wheel[crypto]"; done \
 && /opt/p1-exporter/bin/p1-exporter --version

# Stage 2: the same base image with only the venv; no compiler, no pip cache, no sources.
FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="p1-exporter" \
      org.opencontainers.image.description="Prometheus exporter for P1 and HAN smart meters (DSMR, encrypted P1, DLMS/COSEM)" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/p1-exporter/p1-exporter"
COPY --from=build /opt/p1-exporter /opt/p1-exporter
# uid 10001 in the dialout group, so that a passed-through serial port (group dialout,
# mode 0660) is readable.
RUN useradd --system --uid 10001 --gid dialout --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin p1
ENV PATH=/opt/p1-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:dialout
EXPOSE 9357
# Checks that the HTTP server answers /metrics. Not /healthz: that answers 503 while the meter
# is silent, which is a fact about the meter, not about the container. This assumes plain HTTP
# on port 9357; with --web.listen-address or --web.config.file (TLS, basic auth) change it with
# docker run --health-cmd, or switch it off with --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9357/metrics', timeout=4).read()"]
ENTRYPOINT ["p1-exporter"]
