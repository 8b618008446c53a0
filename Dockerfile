# syntax=docker/dockerfile:1
# iii-supervisor: the engine and its supervised workers in one container (docs/operations.md#docker).
# Stages: `build` (the supervisor's venv), `workers` (a venv with the official SDK, for your
# workers' `command:`), then the image. Both are virtual environments: the project's
# `supervisor` package would otherwise collide with supervisord's.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY supervisor ./supervisor
COPY actors ./actors
COPY transport ./transport
COPY storage ./storage
COPY manifests ./manifests
RUN python -m venv /opt/iii && /opt/iii/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm AS workers
# Your workers run /opt/workers/bin/python; add their dependencies in an image built FROM this
# one: `RUN /opt/workers/bin/pip install --no-cache-dir -r requirements.txt`.
RUN python -m venv /opt/workers && /opt/workers/bin/pip install --no-cache-dir iii-sdk==0.23.0

FROM python:3.11-slim-bookworm
# tini as PID 1 forwards SIGTERM to the supervisor and reaps what is reparented to it; a fixed
# uid lets Kubernetes check runAsNonRoot.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.* \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 iii \
 && useradd --system --uid 10001 --gid iii --home-dir /var/lib/iii-supervisor --create-home iii
COPY --from=build /opt/iii /opt/iii
COPY --from=workers /opt/workers /opt/workers
# The example binds the worker port to $III_BUS_HOST (set below: a container needs 0.0.0.0);
# mount your own over /etc/iii/config.yaml.
COPY deploy/config.example.yaml /etc/iii/config.yaml
ENV PATH=/opt/iii/bin:$PATH \
    III_SUPERVISOR_STATE_DIR=/var/lib/iii-supervisor \
    III_BUS_HOST=0.0.0.0 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/iii-supervisor
# 3111: iii-http; 49134: the worker port (no authentication: publish it on 127.0.0.1 only)
EXPOSE 3111 49134
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["iii-supervisor", "health", "--ready"]
ENTRYPOINT ["/usr/bin/tini", "--", "iii-supervisor"]
CMD ["up", "--config", "/etc/iii/config.yaml", "--log-format", "json"]
