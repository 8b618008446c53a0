from actors.configuration import parse_config, serve
from actors.runtime import main

main(
    "configuration",
    serve,
    parse=parse_config,
    description="Schema-validated runtime configuration registry",
)
