from actors.http import parse_config, serve
from actors.runtime import main

main("iii-http", serve, parse=parse_config, description="HTTP server for http triggers")
