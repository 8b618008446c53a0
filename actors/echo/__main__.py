from actors.echo import serve
from actors.runtime import main

main("iii-echo", serve, description="echo actor")
