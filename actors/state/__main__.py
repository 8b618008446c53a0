from actors.runtime import main
from actors.state import serve

main("iii-state", serve, description="Key-value state organised by scope, with state triggers")
