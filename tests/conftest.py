"""Make the repo importable as in the installed package; keep SDK telemetry off in tests."""

import os

os.environ.setdefault("OTEL_ENABLED", "false")
