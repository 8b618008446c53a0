"""``make bench``: run every ``tests/perf/bench_*.py`` in turn and print their figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    failed = []
    for bench in sorted(HERE.glob("bench_*.py")):
        print(f"\n=== {bench.stem} ===", flush=True)
        rc = subprocess.call(
            [sys.executable, "-m", f"tests.perf.{bench.stem}"], cwd=HERE.parent.parent
        )
        if rc != 0:
            failed.append(bench.stem)
    if failed:
        print(f"\nbenchmarks that failed to run: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
