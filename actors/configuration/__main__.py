from actors.configuration.actor import serve
from actors.runtime import main

main("configuration", serve, description="Schema-validated runtime configuration registry")
