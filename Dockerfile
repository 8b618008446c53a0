# iii-supervisor: the engine and its supervised workers in one container.
# The project installs into a virtual environment: its `supervisor` package would otherwise
# collide with supervisord's.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY supervisor ./supervisor
COPY actors ./actors
COPY transport ./transport
COPY storage ./storage
COPY manifests ./manifests
RUN python -m venv /opt/iii && /opt/iii/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --home /var/lib/iii-supervisor --create-home iii
COPY --from=build /opt/iii /opt/iii
# The embedded default listens on 127.0.0.1 only; in a container the example config binds
# 0.0.0.0. Mount your own over /etc/iii/config.yaml.
COPY deploy/config.example.yaml /etc/iii/config.yaml
ENV PATH=/opt/iii/bin:$PATH \
    III_SUPERVISOR_STATE_DIR=/var/lib/iii-supervisor
USER iii
WORKDIR /var/lib/iii-supervisor
# 49134: worker WebSocket; 3111: iii-http (embedded default config)
EXPOSE 49134 3111
STOPSIGNAL SIGTERM
ENTRYPOINT ["iii-supervisor"]
CMD ["--log-format", "json", "up", "--config", "/etc/iii/config.yaml"]
