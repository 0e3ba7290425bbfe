# A simulated reachlab rig: `labagent run --sim`, gpiozero mock pins and a simulated mouse.
# Build from the repository root:  docker build -f docker/agent.Dockerfile -t reachlab-agent .
# The box id and the broker come from the environment: LABAGENT_BOX, LABAGENT_BROKER,
# LABAGENT_MQTT_USERNAME, LABAGENT_MQTT_PASSWORD (see docker/docker-compose.yml).
# A real rig runs on the Pi itself (docs/single-rig.md, README), not in this image.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /tmp/reachlab
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY agent ./agent
# The light base install, as on a Pi: paho-mqtt, gpiozero and pydantic; no SQLAlchemy, no
# typer, and no controller package at all (the agent never imports it).
RUN pip install . \
    && cd / && rm -rf /tmp/reachlab \
    && useradd --system --create-home --home-dir /home/reachlab reachlab \
    && mkdir -p /data && chown reachlab:reachlab /data

USER reachlab
WORKDIR /data
# The journal and the local per-mouse JSON copies live on a volume, so a restarted
# container replays whatever the broker had not acknowledged.
ENV HOME=/home/reachlab \
    LABAGENT_JOURNAL=/data/journal.sqlite3 \
    LABAGENT_DATA_DIR=/data/sessions
VOLUME ["/data"]

# The box id is LABAGENT_BOX (the same as --box); the time scale LABAGENT_TIME_SCALE.
CMD ["labagent", "run", "--sim"]
