# The reachlab controller: `labctl serve`, the collector, on PostgreSQL (or SQLite).
# Build from the repository root:  docker build -f docker/controller.Dockerfile -t reachlab-controller .
# Configuration is read from the environment: LABCTL_DB, LABCTL_BROKER,
# LABCTL_MQTT_USERNAME, LABCTL_MQTT_PASSWORD (see docker/docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /tmp/reachlab
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY agent ./agent
COPY controller ./controller
# psycopg2-binary ships wheels, so no compiler or libpq is needed.
RUN pip install ".[controller,postgres]" \
    && cd / && rm -rf /tmp/reachlab \
    && useradd --system --create-home --home-dir /home/reachlab reachlab \
    && mkdir -p /data && chown reachlab:reachlab /data

USER reachlab
WORKDIR /data
# labctl's own files (exports, a default SQLite database when LABCTL_DB is unset) live here.
ENV HOME=/home/reachlab \
    XDG_DATA_HOME=/data
VOLUME ["/data"]

CMD ["labctl", "serve"]
