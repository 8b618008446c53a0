from actors.http_functions import parse_config, serve
from actors.runtime import main

main(
    "iii-http-functions",
    serve,
    parse=parse_config,
    description="Functions implemented by external HTTP endpoints",
)
