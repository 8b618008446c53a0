"""``iii-supervisor up``: the composition root, where the engine (bus + listeners), the
supervision runtime and the status socket are built and wired together — the only module
that imports both ``supervisor.engine`` and ``supervisor.supervision``.

Order matters: the state-directory lock and the status socket come first (a second
instance must fail with exit 1 naming the first, not with a port clash), then the engine
binds its listeners, then the child manager starts the workers on that bus.

Exit codes follow SUPERVISOR.md Appendix B: 0 clean stop, 1 forced or already running,
69 critical worker failed, 70 internal error, 73 cannot bind, 78 invalid configuration.
"""

from __future__ import annotations

import signal

import structlog
import trio

from supervisor.config.model import EngineConfig
from supervisor.engine import BindError, Engine, run_engine
from supervisor.engine.builtins.calls import call_stats
from supervisor.status.server import SocketInUse, StatusServer
from supervisor.supervision.children import SUPERVISED_KINDS
from supervisor.supervision.runtime import (
    EXIT_CANTCREAT,
    EXIT_CRITICAL,
    EXIT_FORCED,
    EXIT_INTERNAL,
    EXIT_OK,
    AlreadyRunning,
    SupervisionOptions,
    SupervisorRuntime,
)

log = structlog.get_logger(__name__)

EXIT_CONFIG = 78
SHUTDOWN_DEADLINE = 5.0  # for the engine after the workers are down

__all__ = [
    "run_up",
    "EXIT_OK",
    "EXIT_FORCED",
    "EXIT_CRITICAL",
    "EXIT_INTERNAL",
    "EXIT_CANTCREAT",
    "EXIT_CONFIG",
]


def status_server(runtime: SupervisorRuntime) -> StatusServer:
    """The status socket at the runtime's path, answering for that runtime."""
    return StatusServer(
        runtime.socket_path,
        runtime,
        group=runtime.options.socket_group,
        group_control=runtime.options.socket_group_control,
    )


async def run_up(cfg: EngineConfig, options: SupervisionOptions | None = None) -> int:
    runtime = SupervisorRuntime(cfg, options, control_socket=status_server)
    # Signals are ours from the very start, so a SIGTERM during start-up is an orderly stop.
    with trio.open_signal_receiver(
        signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1
    ) as signals:
        try:
            runtime.prepare()
        except (AlreadyRunning, SocketInUse) as exc:
            log.error(str(exc), hint="stop it first, or use another --state-dir/--socket")
            return EXIT_FORCED
        except OSError as exc:
            log.error("cannot create the status socket or state directory", error=str(exc))
            return EXIT_CANTCREAT
        exit_code = EXIT_OK
        try:
            async with trio.open_nursery() as nursery:
                engine: Engine = await nursery.start(run_engine, cfg)
                # The same workers `status` lists: the supervised ones (in-engine parts such
                # as iii-engine-functions have no process and no row).
                supervised = [w.name for w in cfg.workers if w.kind in SUPERVISED_KINDS]
                log.info("engine ready", ports=engine.ports, workers=supervised)
                for warning in cfg.warnings:
                    log.warning(warning)
                bus = engine.bus.bus
                runtime.call_stats = lambda: call_stats(bus)
                exit_code = await runtime.run(engine.bus, signals, ports=engine.ports)
                nursery.cancel_scope.deadline = trio.current_time() + SHUTDOWN_DEADLINE
                nursery.cancel_scope.cancel()
        except* BindError as group:
            for error in _leaves(group):
                log.error(
                    str(error),
                    hint="stop the process that holds it, or change `port` of the "
                    "iii-worker-manager entry in config.yaml",
                )
            exit_code = EXIT_CANTCREAT
        finally:
            runtime.close()
        return exit_code


def _leaves(group: BaseExceptionGroup[BindError]) -> list[BaseException]:
    """The exceptions themselves, however deeply the nurseries wrapped them."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
