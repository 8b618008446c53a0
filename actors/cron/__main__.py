from actors.cron import parse_config, serve
from actors.runtime import main

main(
    "iii-cron",
    serve,
    parse=parse_config,
    description="Cron triggers that fire functions on a schedule",
)
