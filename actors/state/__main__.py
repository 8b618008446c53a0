from actors.runtime import main
from actors.state import parse_config, serve

main(
    "iii-state",
    serve,
    parse=parse_config,
    description="Key-value state organised by scope, with state triggers",
)
