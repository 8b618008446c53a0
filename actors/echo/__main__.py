from actors.echo import parse_config, serve
from actors.runtime import main

main("iii-echo", serve, parse=parse_config, description="echo actor")
