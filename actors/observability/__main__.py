from actors.observability import parse_config, serve
from actors.runtime import main

main(
    "iii-observability",
    serve,
    parse=parse_config,
    description="Traces, metrics and logs: ingestion, queries, OTLP export",
)
