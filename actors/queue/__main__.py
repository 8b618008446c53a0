from actors.queue import parse_config, serve
from actors.runtime import main

main(
    "iii-queue",
    serve,
    parse=parse_config,
    description="Named job queues and durable topics with retries and a dead-letter queue",
)
