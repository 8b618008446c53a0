"""The ``iii-supervisor`` command line.

``up`` runs the engine and its workers in the foreground. Every other verb talks to a
running ``up`` over its status socket (found from the same ``--config``/``--state-dir``, or
``--socket``), using the small standard-library client; ``check`` works offline. Verbs
follow systemctl and supervisorctl (SUPERVISOR.md §14).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from supervisor.logs import configure_logging
from supervisor.status.render import format_functions, format_remote, format_worker

EXIT_USAGE = 2
STATUS_NOT_READY = 3
STATUS_UNKNOWN = 4


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Options every verb takes, before or after the verb (``-c x status``, ``status -c x``).

    The top-level parser holds the defaults; the verbs' copies default to SUPPRESS, so a value
    given before the verb is not overwritten by the verb's own default.
    """

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "-c", "--config", type=Path, default=default(None), help="path to config.yaml"
    )
    parser.add_argument("--state-dir", type=Path, default=default(None), help="state directory")
    parser.add_argument("--socket", type=Path, default=default(None), help="status socket path")
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=default(None),
        help="debug, info, warning or error (default: info, or $III_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default=default(None),
        help="log format (default: console on a TTY, JSON otherwise)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iii-supervisor",
        description="An iii engine on trio that supervises every worker as its own process.",
    )
    _common_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    where = argparse.ArgumentParser(add_help=False)
    _common_options(where, defaults=False)

    up = sub.add_parser(
        "up",
        parents=[where],
        help="run the engine and its workers",
        description="Run the engine and every configured worker in the foreground. Without "
        "--config, uses ./config.yaml if it exists, else the embedded default (listener on "
        "49134, iii-http on 3111, in-memory state, local pub/sub).",
    )
    up.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NAME",
        help="start only these workers (and their dependencies)",
    )
    up.add_argument(
        "--bus-listen",
        default=None,
        metavar="HOST:PORT",
        help="address of the first listener, e.g. 0.0.0.0:49134 in a container",
    )
    up.add_argument(
        "--bus-port", type=int, default=None, help="port of the first listener (0: any free port)"
    )
    up.add_argument(
        "--socket-group", default=None, help="make the status socket 0660 for this group"
    )
    up.add_argument(
        "--socket-group-control",
        action="store_true",
        default=None,
        help="let the socket group run mutating commands",
    )
    up.add_argument("--shutdown-timeout", default=None, help="global stop deadline, e.g. 30s")
    up.add_argument(
        "--no-install",
        action="store_true",
        default=None,
        help="never run manifests' install scripts (as `install: never` for every worker)",
    )
    up.add_argument(
        "--strict", action="store_true", help="treat warnings about unsupported entries as errors"
    )

    status = sub.add_parser("status", parents=[where], help="show workers (supervisorctl style)")
    status.add_argument("names", nargs="*", metavar="NAME")
    status.add_argument("--json", action="store_true", help="print the raw status document")
    status.add_argument("--watch", action="store_true", help="follow state transitions")
    status.add_argument(
        "--remote",
        action="store_true",
        help="also list connected workers this supervisor does not run (read-only rows)",
    )
    status.add_argument(
        "--functions", action="store_true", help="calls, errors and latency per function"
    )

    for verb, text in (
        ("start", "start workers"),
        ("stop", "stop workers"),
        ("restart", "restart workers"),
    ):
        p = sub.add_parser(verb, parents=[where], help=text)
        p.add_argument("names", nargs="+", metavar="NAME", help="worker names, or `all`")
        if verb != "stop":
            p.add_argument(
                "--no-wait", action="store_true", help="return without waiting for readiness"
            )
        p.add_argument("--timeout", default=None, help="how long to wait, e.g. 30s")

    reset = sub.add_parser(
        "reset-failed", parents=[where], help="failed → stopped, counters cleared"
    )
    reset.add_argument("names", nargs="*", metavar="NAME")

    sig = sub.add_parser(
        "signal", parents=[where], help="send a signal to a worker's process group"
    )
    sig.add_argument("name", metavar="NAME")
    sig.add_argument("signal", metavar="SIG")

    logs = sub.add_parser("logs", parents=[where], help="show a worker's output")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("-n", "--tail", type=int, default=100, help="number of lines (default 100)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--stream", choices=("stdout", "stderr"), default=None)

    sub.add_parser(
        "reload",
        parents=[where],
        help="re-read the configuration and apply the difference",
        description="Re-read config.yaml and apply the diff (systemd's reload, supervisorctl's "
        "`update`). This does NOT restart unchanged workers, unlike supervisorctl's `reload`.",
    )
    shutdown = sub.add_parser("shutdown", parents=[where], help="stop every worker and exit")
    shutdown.add_argument("--timeout", default=None, help="global stop deadline, e.g. 30s")

    check = sub.add_parser("check", parents=[where], help="validate the configuration offline")
    check.add_argument("--strict", action="store_true")
    check.add_argument("--json", action="store_true")

    health = sub.add_parser("health", parents=[where], help="probe for container health checks")
    health.add_argument(
        "--ready",
        action="store_true",
        help="also require start-up complete and critical workers ready",
    )
    health.add_argument(
        "--all", action="store_true", help="with --ready: every autostart worker must be ready"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, json=_json_logs(args.log_format))
    handler = COMMANDS.get(args.command)
    if handler is None:
        return EXIT_USAGE
    return handler(args)


def _json_logs(log_format: str | None) -> bool | None:
    """``--log-format`` as configure_logging's ``json`` (None: decide by the TTY)."""
    return {None: None, "auto": None, "json": True, "console": False}[log_format]


# -- up ---------------------------------------------------------------------------------------


def _setting(flag: Any, key: str, settings: dict[str, Any]) -> Any:
    """A supervisor-wide setting: the flag, else ``III_SUPERVISOR_<KEY>``, else the config's."""
    if flag is not None:
        return flag
    env = os.environ.get(f"III_SUPERVISOR_{key.upper()}")
    if env not in (None, ""):
        return env
    return settings.get(key)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = str(value).rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--bus-listen {value!r}: expected HOST:PORT, e.g. 0.0.0.0:49134")
    return host.strip("[]"), int(port)


def cmd_up(args: argparse.Namespace) -> int:
    import attrs
    import trio

    from supervisor.app import EXIT_CONFIG, run_up
    from supervisor.config import ConfigError, load
    from supervisor.supervision.runtime import SupervisionOptions
    from supervisor.supervision.statedir import anchored

    try:
        loaded = load(args.config, strict=args.strict)
        if not args.strict and loaded.settings.values.get("strict"):
            loaded = load(args.config, strict=True)
    except ConfigError as exc:
        print(f"iii-supervisor: invalid configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    cfg = loaded.engine
    settings = anchored(dict(loaded.settings.values), cfg.source)
    # The config may set the log level and format too: flags and environment win over it.
    level = (
        args.log_level
        or os.environ.get("III_SUPERVISOR_LOG_LEVEL")
        or os.environ.get("III_LOG_LEVEL")
        or settings.get("log_level")
    )
    fmt = _setting(args.log_format, "log_format", settings)
    if (level, fmt) != (args.log_level, args.log_format):
        configure_logging(level, json=_json_logs(fmt))
    listen = _setting(args.bus_listen, "bus_listen", settings)
    bus_port = _setting(args.bus_port, "bus_port", settings)
    if (listen is not None or bus_port is not None) and cfg.listeners:
        first = cfg.listeners[0]
        try:
            if listen is not None:
                host, port = _host_port(listen)
                first = attrs.evolve(first, host=host, port=port)
            if bus_port is not None:
                first = attrs.evolve(first, port=int(bus_port))
        except ValueError as exc:
            print(f"iii-supervisor: {exc}", file=sys.stderr)
            return EXIT_USAGE
        cfg = attrs.evolve(cfg, listeners=(first, *cfg.listeners[1:]))
    options = SupervisionOptions.resolve(
        flags={
            "state_dir": args.state_dir,
            "socket": args.socket,
            "socket_group": args.socket_group,
            "socket_group_control": args.socket_group_control,
            "shutdown_timeout": args.shutdown_timeout,
            "only": args.only,
            "no_install": args.no_install,
        },
        settings=settings,
        config_path=cfg.source,
    )
    return trio.run(run_up, cfg, options)


# -- the client verbs ---------------------------------------------------------------------------

NOT_FOUND = (
    "no supervisor answers — is `iii-supervisor up` running for this config? try `-c` or `--socket`"
)


def _config_path(args: argparse.Namespace) -> Path | None:
    if args.config is not None:
        return Path(args.config).resolve()
    if Path("config.yaml").exists():
        return Path("config.yaml").resolve()
    return None


def socket_candidates_for(args: argparse.Namespace) -> list[Path]:
    """Where ``up`` for these arguments listens, in the order docs/cli.md gives."""
    from supervisor.supervision.statedir import client_candidates

    return client_candidates(_config_path(args), args.socket, args.state_dir)


class _NotFound(Exception):
    def __init__(self, tried: list[tuple[Path, str]]) -> None:
        super().__init__(NOT_FOUND)
        self.tried = tried


def _client(args: argparse.Namespace, timeout: float = 2.0) -> Any:
    """A client connected to the first candidate that answers, or ``_NotFound`` listing each
    path tried and why it did not answer."""
    from supervisor.status.client import StatusClient, Unreachable
    from supervisor.supervision.statedir import socket_problem

    tried: list[tuple[Path, str]] = []
    for path in socket_candidates_for(args):
        problem = socket_problem(path)
        if problem is None:
            client = StatusClient(path, timeout=timeout)
            try:
                client.connect()
                return client
            except Unreachable as exc:
                problem = exc.reason
        tried.append((path, problem))
    raise _NotFound(tried)


def _unreachable(exc: _NotFound, code: int = 1) -> int:
    print(f"iii-supervisor: {exc}", file=sys.stderr)
    for path, problem in exc.tried:
        print(f"  {path}: {problem}", file=sys.stderr)
    return code


def _request(
    args: argparse.Namespace,
    cmd: str,
    cargs: dict[str, Any] | None = None,
    *,
    timeout: float = 2.0,
    unreachable: int = 1,
) -> Any:
    """Run one request; raises ``_Exit`` with the right code on any failure."""
    from supervisor.status.client import ClientError

    try:
        with _client(args, timeout=timeout) as client:
            return client.request(cmd, cargs)
    except _NotFound as exc:
        raise _Exit(_unreachable(exc, unreachable)) from None
    except ClientError as exc:
        _print_error(exc)
        raise _Exit(STATUS_UNKNOWN if exc.code == "UNKNOWN_WORKER" else 1) from None
    except (OSError, ValueError) as exc:
        print(f"iii-supervisor: {exc}", file=sys.stderr)
        raise _Exit(1) from None


def _print_error(exc: Any) -> None:
    """An error reply, each problem once: a message that lists its ``details.errors`` too (as
    ``reload``'s CONFIG_INVALID does, for clients that show only the message) loses its list."""
    details = exc.details if isinstance(exc.details, dict) else {}
    errors = [str(e) for e in details.get("errors", [])]
    message = str(exc.message)
    if errors:
        kept = [line for line in message.splitlines() if line.strip() not in errors]
        message = "\n".join(kept).rstrip(":\n ")
    print(f"iii-supervisor: {message}", file=sys.stderr)
    for err in errors:
        print(f"  {err}", file=sys.stderr)


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except _Exit as exc:
            return exc.code
        except KeyboardInterrupt:
            return 130

    return run


@_guard
def cmd_status(args: argparse.Namespace) -> int:
    if args.watch:
        return cmd_watch(args)
    cargs: dict[str, Any] = {"names": args.names} if args.names else {}
    if args.remote:
        cargs["remote"] = True
    doc = _request(args, "status", cargs or None, unreachable=STATUS_UNKNOWN)
    workers = doc.get("workers", [])
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.functions:
        print("\n".join(format_functions(doc.get("calls"))))
        return 0
    else:
        for w in workers:
            print(format_worker(w))
        for r in doc.get("remote", []):
            print(format_remote(r))
    considered = (
        workers
        if args.names
        else [w for w in workers if (w.get("policy") or {}).get("autostart", True)]
    )
    return 0 if all(w["state"] == "ready" for w in considered) else STATUS_NOT_READY


def cmd_watch(args: argparse.Namespace) -> int:
    from supervisor.status.client import ClientError

    cargs = {"names": args.names} if args.names else {}
    try:
        with _client(args, timeout=3600.0) as client:
            for ev in client.stream("events", cargs, timeout=None):
                if ev.get("event") == "transition":
                    print(
                        f"{ev.get('ts', '')} {ev['worker']}: {ev['from']} → {ev['to']} ({ev.get('cause')})",
                        flush=True,
                    )
                elif ev.get("event") in ("spawned", "ended"):
                    print(
                        f"{ev.get('ts', '')} {ev['worker']}: {ev['event']} pid {ev.get('pid')}",
                        flush=True,
                    )
    except _NotFound as exc:
        return _unreachable(exc, STATUS_UNKNOWN)
    except ClientError as exc:
        _print_error(exc)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _lifecycle(args: argparse.Namespace, verb: str) -> int:
    cargs: dict[str, Any] = {"names": args.names}
    if getattr(args, "no_wait", False):
        cargs["wait"] = False
    if args.timeout:
        cargs["timeout"] = args.timeout
    budget = 3600.0
    result = _request(args, verb, cargs, timeout=budget)
    failed = False
    for w in result.get("workers", []):
        what = (
            {"start": "started", "stop": "stopped", "restart": "restarted"}[verb]
            if w["changed"]
            else "unchanged"
        )
        pid = f", pid {w['pid']}" if w.get("pid") else ""
        print(f"{w['name']}: {what} ({w['state']}{pid})")
        if (
            verb in ("start", "restart")
            and not getattr(args, "no_wait", False)
            and w["state"] != "ready"
        ):
            failed = True
    return 1 if failed else 0


@_guard
def cmd_start(args: argparse.Namespace) -> int:
    return _lifecycle(args, "start")


@_guard
def cmd_stop(args: argparse.Namespace) -> int:
    return _lifecycle(args, "stop")


@_guard
def cmd_restart(args: argparse.Namespace) -> int:
    return _lifecycle(args, "restart")


@_guard
def cmd_reset_failed(args: argparse.Namespace) -> int:
    result = _request(
        args, "reset-failed", {"names": args.names} if args.names else None, timeout=60.0
    )
    for w in result.get("workers", []):
        if w["changed"]:
            print(f"{w['name']}: reset ({w['state']})")
    return 0


@_guard
def cmd_signal(args: argparse.Namespace) -> int:
    _request(args, "signal", {"name": args.name, "signal": args.signal})
    print(f"{args.name}: sent {args.signal}")
    return 0


def _print_log(line: dict[str, Any]) -> None:
    print(f"{line.get('ts', '')} {line.get('stream', ''):<6} {line.get('line', '')}", flush=True)


@_guard
def cmd_logs(args: argparse.Namespace) -> int:
    from supervisor.status.client import ClientError

    cargs: dict[str, Any] = {"name": args.name, "tail": args.tail}
    if args.stream:
        cargs["stream"] = args.stream
    if not args.follow:
        result = _request(args, "logs", cargs, timeout=10.0)
        for line in result.get("lines", []):
            _print_log(line)
        return 0
    cargs["follow"] = True
    try:
        with _client(args, timeout=3600.0) as client:
            for ev in client.stream("logs", cargs, timeout=None):
                _print_log(ev)
    except _NotFound as exc:
        return _unreachable(exc)
    except ClientError as exc:
        _print_error(exc)
        return STATUS_UNKNOWN if exc.code == "UNKNOWN_WORKER" else 1
    except KeyboardInterrupt:
        return 0
    return 0


@_guard
def cmd_reload(args: argparse.Namespace) -> int:
    diff = _request(args, "reload", timeout=600.0)
    for key in ("added", "removed", "changed"):
        if diff.get(key):
            print(f"{key}: {', '.join(diff[key])}")
    if not any(diff.get(k) for k in ("added", "removed", "changed")):
        print("no changes")
    return 0


@_guard
def cmd_shutdown(args: argparse.Namespace) -> int:
    cargs = {"timeout": args.timeout} if args.timeout else None
    result = _request(args, "shutdown", cargs)
    print("stopping: " + (", ".join(result.get("stopping", [])) or "(no workers)"))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from supervisor.config import check_config

    report = check_config(args.config, strict=args.strict)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for p in report.errors:
            print(f"error: {p}")
        for p in report.warnings:
            print(f"warning: {p}")
        print("configuration is valid" if report.valid else f"{len(report.errors)} error(s)")
    return 0 if report.valid else 1


@_guard
def cmd_health(args: argparse.Namespace) -> int:
    if not args.ready:
        _request(args, "ping")
        return 0
    doc = _request(args, "status")
    sup = doc.get("supervisor", {})
    if sup.get("state") not in ("running", "degraded"):
        return 1
    for w in doc.get("workers", []):
        policy = w.get("policy") or {}
        must = policy.get("critical") or (args.all and policy.get("autostart", True))
        if must and w["state"] != "ready":
            return 1
    return 0


COMMANDS = {
    "up": cmd_up,
    "status": cmd_status,
    "start": cmd_start,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "reset-failed": cmd_reset_failed,
    "signal": cmd_signal,
    "logs": cmd_logs,
    "reload": cmd_reload,
    "shutdown": cmd_shutdown,
    "check": cmd_check,
    "health": cmd_health,
}

if __name__ == "__main__":
    sys.exit(main())
