from actors.pubsub import parse_config, serve
from actors.runtime import main

main(
    "iii-pubsub",
    serve,
    parse=parse_config,
    description="Topic publish/subscribe with subscribe triggers",
)
