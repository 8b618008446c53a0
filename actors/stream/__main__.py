from actors.runtime import main
from actors.stream import parse_config, serve

main(
    "iii-stream",
    serve,
    parse=parse_config,
    description="Streams of items by group, pushed to WebSocket clients on every change",
)
