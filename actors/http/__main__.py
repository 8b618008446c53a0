import sys

from actors.http import serve
from actors.http.config import ConfigError, parse_config
from actors.runtime import EXIT_CONFIG, load_actor_config, main


def _check_config() -> None:
    """Refuse a bad config block before connecting to the bus (exit code 78)."""
    try:
        raw = load_actor_config()
    except (OSError, ValueError):
        return  # the runtime reports an unreadable file itself
    try:
        parse_config(raw)
    except ConfigError as exc:
        print(f"iii-http: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


_check_config()
main("iii-http", serve, description="HTTP server for http triggers")
