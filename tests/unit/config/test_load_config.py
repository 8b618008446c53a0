"""``load_config``: built-in names, aliases, duplicates, mandatory workers, user workers, defaults.

Each error test asserts the substring the operator reads; see test_invalid_cases.py for §17.7.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from manifests.problems import ConfigProblem
from supervisor.config import (
    ConfigError,
    builtin_worker,
    check_config,
    load,
    load_config,
    load_supervisor_settings,
)
from supervisor.config.model import (
    Backoff,
    Health,
    Limits,
    ListenerConfig,
    LogSettings,
    RestartMode,
    SuperviseSpec,
    WorkerKind,
)

from .conftest import report_of

Write = Callable[[str, str], Path]
MANDATORY = ["configuration", "iii-observability", "iii-engine-functions", "iii-worker-manager"]


def names(path: Path | None, **env: str) -> list[str]:
    return [w.name for w in load_config(path, env=env).workers]


# -- the embedded default and ./config.yaml -------------------------------------------------------


def test_embedded_default_when_no_config_yaml(project: Path) -> None:
    config = load_config(None, env={})
    assert config.source is None
    assert config.warnings == ()
    kinds = {w.name: (w.kind, w.actor_module) for w in config.workers}
    assert kinds == {
        "iii-worker-manager": (WorkerKind.LISTENER, None),
        "iii-http": (WorkerKind.ACTOR, "actors.http"),
        "iii-state": (WorkerKind.ACTOR, "actors.state"),
        "iii-pubsub": (WorkerKind.ACTOR, "actors.pubsub"),
        "configuration": (WorkerKind.ACTOR, "actors.configuration"),
        "iii-observability": (WorkerKind.ACTOR, "actors.observability"),
        "iii-engine-functions": (WorkerKind.IN_PROCESS, None),
    }
    assert config.listeners == (ListenerConfig(host="127.0.0.1", port=49134),)
    assert config.engine_port == 49134
    http = config.worker("iii-http")
    assert http is not None and http.config == {"host": "0.0.0.0", "port": 3111}
    state = config.worker("iii-state")
    assert state is not None
    assert state.config["adapter"] == {"name": "kv", "config": {"store_method": "in_memory"}}
    assert config.worker("iii-pubsub").config == {"adapter": {"name": "local"}}  # type: ignore[union-attr]
    assert http.working_dir == project
    assert http.manifest is not None and http.manifest.start == "python -m actors.http"


def test_config_yaml_in_cwd_is_preferred(write: Write, project: Path) -> None:
    write("config.yaml", "workers: []\n")
    config = load_config(None, env={})
    assert config.source == project / "config.yaml"
    assert [w.name for w in config.workers] == MANDATORY


def test_empty_worker_list_runs_only_mandatory_workers(write: Write) -> None:
    config = load_config(write("config.yaml", "workers: []\n"), env={})
    assert [w.name for w in config.workers] == MANDATORY
    assert config.listeners == (ListenerConfig(),)  # upstream default: 0.0.0.0:49134
    assert config.worker("configuration").kind is WorkerKind.ACTOR  # type: ignore[union-attr]
    assert config.namespace_grace_ms == 5000


def test_empty_file_is_like_no_workers(write: Write) -> None:
    assert names(write("config.yaml", "# nothing\n")) == MANDATORY


def test_missing_file(project: Path) -> None:
    assert report_of(project / "nope.yaml").endswith("nope.yaml: file not found")


# -- names, aliases, duplicates ----------------------------------------------------------------


def test_aliases_are_built_ins_and_keep_their_names(write: Write) -> None:
    path = write(
        "config.yaml",
        """
        workers:
          - name: http
            config: {port: 3199}
          - name: state
          - name: pubsub
        """,
    )
    config = load_config(path, env={})
    assert [(w.name, w.actor_module) for w in config.workers[:3]] == [
        ("http", "actors.http"),
        ("state", "actors.state"),
        ("pubsub", "actors.pubsub"),
    ]
    assert config.workers[0].config == {"port": 3199}
    assert config.workers[0].line == 2


def test_duplicates_get_suffixes_and_listeners_are_independent(write: Write) -> None:
    path = write(
        "config.yaml",
        """
        workers:
          - name: iii-worker-manager
            config: {port: 49199}
          - name: iii-worker-manager
            config:
              port: 49135
              host: 127.0.0.1
          - name: iii-http
          - name: iii-http
            config: {port: 3112}
        """,
    )
    config = load_config(path, env={})
    assert [w.name for w in config.workers] == [
        "iii-worker-manager",
        "iii-worker-manager#1",
        "iii-http",
        "iii-http#1",
        "configuration",
        "iii-observability",
        "iii-engine-functions",
    ]
    assert [listener.port for listener in config.listeners] == [49199, 49135]
    assert config.listeners[1].host == "127.0.0.1"
    assert config.engine_port == 49199


def test_the_sdk_suite_rbac_listener_loads(write: Write) -> None:
    """PROTOCOL.md §13.10: the RBAC listener of upstream's config-test.yaml, verbatim."""
    path = write(
        "config.yaml",
        """
        workers:
          - name: iii-worker-manager
            config: {port: 49199}
          - name: iii-worker-manager
            config:
              host: 0.0.0.0
              port: 49135
              middleware_function_id: test::rbac-worker::middleware
              rbac:
                auth_function_id: test::rbac-worker::auth
                on_function_registration_function_id: test::rbac-worker::on-function-reg
                on_trigger_registration_function_id: test::rbac-worker::on-trigger-reg
                on_trigger_type_registration_function_id: test::rbac-worker::on-trigger-type-reg
                expose_functions:
                  - match("test::ew::public::*")
                  - match('engine::functions::list')
                  - metadata:
                      ew_public: true
        """,
    )
    config = load_config(path, env={})
    rbac_listener = config.listeners[1]
    assert rbac_listener.middleware_function_id == "test::rbac-worker::middleware"
    assert rbac_listener.rbac is not None
    assert rbac_listener.rbac.auth_function_id == "test::rbac-worker::auth"
    assert rbac_listener.rbac.expose_functions == (
        'match("test::ew::public::*")',
        "match('engine::functions::list')",
        {"metadata": {"ew_public": True}},
    )
    assert config.listeners[0].rbac is None


def test_renamed_pair_is_the_upstream_duplicate_error(write: Write) -> None:
    path = write(
        "config.yaml",
        "workers:\n  - name: iii-http\n  - name: http\n  - name: state\n  - name: iii-state\n",
    )
    out = report_of(path)
    assert (
        "config.yaml:2: workers[0]: Duplicate worker configurations: 'iii-http' is the deprecated "
        "name for 'http', but both are present. Remove 'iii-http' from your configuration."
    ) in out
    assert "'iii-state' is the deprecated name for 'state'" in out


def test_unknown_name_lists_known_workers(write: Write) -> None:
    out = report_of(write("config.yaml", "workers:\n  - name: iii-htp\n"))
    assert (
        "config.yaml:2: workers[0].name: unknown worker 'iii-htp' (did you mean iii-http?)" in out
    )
    for known in ("iii-http", "http", "iii-state", "configuration", "iii-worker-manager"):
        assert known in out
    assert "worker_path" in out and "supervise.command" in out


def test_not_implemented_builtins_load_with_a_warning(write: Write) -> None:
    path = write(
        "config.yaml",
        "workers:\n  - name: iii-exec\n  - name: iii-bridge\n  - name: iii-telemetry\n",
    )
    config = load_config(path, env={})
    assert [w.name for w in config.workers] == MANDATORY
    assert len(config.warnings) == 3
    assert config.warnings[0].endswith(
        "config.yaml:2: workers[0] (iii-exec): iii-exec is not implemented by "
        "iii-supervisor yet; the entry is ignored"
    )
    with pytest.raises(ConfigError, match="iii-bridge is not implemented"):
        load(path, env={}, strict=True)


def test_image_on_built_in_is_an_error_and_on_others_unsupported(write: Write) -> None:
    out = report_of(write("config.yaml", "workers:\n  - name: iii-http\n    image: x/y:1\n"))
    assert "Worker 'iii-http' is a built-in worker and cannot have an 'image' field" in out
    path = write("config.yaml", "workers:\n  - name: pdfkit\n    image: ghcr.io/acme/pdfkit:1.2\n")
    config = load_config(path, env={})
    assert config.worker("pdfkit") is None
    assert "UNSUPPORTED_SOURCE" in config.warnings[0]


def test_mandatory_workers_are_not_duplicated(write: Write) -> None:
    path = write(
        "config.yaml",
        """
        workers:
          - name: configuration
            config: {adapter: {name: fs, config: {directory: ./cfg}}}
          - name: iii-observability
            config: {enabled: false}
        """,
    )
    config = load_config(path, env={})
    assert [w.name for w in config.workers] == MANDATORY
    configuration = config.worker("configuration")
    assert configuration is not None and configuration.config["adapter"]["name"] == "fs"
    observability = config.worker("iii-observability")
    assert observability is not None and observability.kind is WorkerKind.ACTOR
    assert observability.config == {"enabled": False}


def test_modules_are_appended_after_workers(write: Write) -> None:
    path = write("config.yaml", "modules:\n  - name: iii-state\nworkers:\n  - name: iii-http\n")
    assert names(path)[:2] == ["iii-http", "iii-state"]


def test_unknown_entry_keys_are_warnings(write: Write) -> None:
    config = load_config(
        write("config.yaml", "workers:\n  - name: iii-http\n    confg: {}\n"), env={}
    )
    assert "workers[0].confg: unknown key, ignored (did you mean config?)" in config.warnings[0]


# -- top level ---------------------------------------------------------------------------------


def test_grace_from_file_and_env(write: Write) -> None:
    path = write("config.yaml", "registration_namespace_grace_ms: 250\nworkers: []\n")
    assert load_config(path, env={}).namespace_grace_ms == 250
    assert load_config(path, env={"III_NAMESPACE_GRACE_MS": "900"}).namespace_grace_ms == 900
    config = load_config(path, env={"III_NAMESPACE_GRACE_MS": "soon"})
    assert config.namespace_grace_ms == 250
    assert "III_NAMESPACE_GRACE_MS" in config.warnings[0]
    out = report_of(write("config.yaml", "registration_namespace_grace_ms: -1\n"))
    assert "registration_namespace_grace_ms: must be a non-negative integer" in out


def test_unknown_top_level_keys(write: Write) -> None:
    out = report_of(write("config.yaml", "worker: []\nsupervisor: {}\n"))
    assert "config.yaml:1: worker: unknown top-level key (did you mean workers?)" in out
    assert "supervisor" not in out  # our settings block (docs/configuration.md#top-level)


def test_shapes(write: Write) -> None:
    out = report_of(write("config.yaml", "workers:\n"))
    assert "config.yaml:1: workers: must be a list, got null" in out
    out = report_of(write("config.yaml", "workers:\n  - iii-http\n  - config: {}\n  - name: 3\n"))
    assert "workers[0]: must be a mapping, got a string" in out
    assert "workers[1].name: missing" in out
    assert "workers[2].name: must be a string, got an integer" in out
    assert "top level must be a mapping" in report_of(write("config.yaml", "- a\n"))


def test_interpolation_applies_before_parsing(write: Write) -> None:
    path = write(
        "config.yaml",
        """
        workers:
          - name: iii-http
            config:
              port: ${HTTP_PORT:3111}
              host: "${HTTP_HOST:127.0.0.1}"
        """,
    )
    assert load_config(path, env={}).workers[0].config == {"port": 3111, "host": "127.0.0.1"}
    config = load_config(path, env={"HTTP_PORT": "8080"})
    assert config.workers[0].config["port"] == 8080
    out = report_of(path, env={"HTTP_PORT": "eighty"})
    assert "config.yaml:4: workers[0] (iii-http): port: expected int, got 'eighty'" in out


def test_built_in_block_errors_name_file_line_worker_and_field(write: Write) -> None:
    path = write(
        "config.yaml",
        """
        workers:
          - name: iii-state
          - name: iii-pubsub
          - name: iii-http
            config:
              port: abc
              cors: {allowed_origin: []}
          - name: iii-worker-manager
            config: {port: 1, rbac: {expose_functions: [nope]}}
          - name: configuration
            config: [1]
        """,
    )
    out = report_of(path)
    assert "config.yaml:6: workers[2] (iii-http): port: expected int, got 'abc'" in out
    assert (
        "config.yaml:7: workers[2] (iii-http): cors.allowed_origin: unknown key "
        "(did you mean cors.allowed_origins?)"
    ) in out
    assert "workers[3] (iii-worker-manager): rbac.expose_functions[0]: a string filter" in out
    assert "config.yaml:11: workers[4].config: expected a mapping, got a list" in out


# -- user workers ------------------------------------------------------------------------------


def test_manifest_worker(write: Write, project: Path) -> None:
    write(
        "workers/api/iii.worker.yaml",
        "name: api\nscripts: {start: node index.js, install: npm ci}\n",
    )
    path = write(
        "config.yaml",
        """
        workers:
          - name: api
            worker_path: ./workers/api
            config: {precision: 12}
        """,
    )
    api = load_config(path, env={}).worker("api")
    assert api is not None
    assert api.kind is WorkerKind.MANIFEST
    assert api.worker_path == project / "workers/api"
    assert api.working_dir == project / "workers/api"
    assert api.manifest is not None and api.manifest.start == "node index.js"
    assert api.config == {"precision": 12}
    assert api.supervise == SuperviseSpec()


def test_worker_path_relative_to_the_config_file(write: Write, project: Path) -> None:
    write("deploy/workers/api/iii.worker.yaml", "name: api\nscripts: {start: x}\n")
    path = write("deploy/config.yaml", "workers:\n  - name: api\n    worker_path: workers/api\n")
    api = load_config(path, env={}).worker("api")
    assert api is not None and api.worker_path == project / "deploy/workers/api"


def test_worker_path_without_manifest(write: Write, project: Path) -> None:
    (project / "bare").mkdir()
    out = report_of(write("config.yaml", "workers:\n  - name: w\n    worker_path: ./bare\n"))
    assert (
        "workers[0].worker_path: ./bare has no iii.worker.yaml — add one, or set supervise.command"
        in out
    )
    path = write(
        "config.yaml",
        "workers:\n  - name: w\n    worker_path: ./bare\n    supervise: {command: ./run.sh}\n",
    )
    w = load_config(path, env={}).worker("w")
    assert w is not None
    assert (w.kind, w.working_dir, w.supervise.command) == (
        WorkerKind.COMMAND,
        project / "bare",
        "./run.sh",
    )


def test_manifest_errors_are_reported_relative_to_the_config_dir(write: Write) -> None:
    write("workers/api/iii.worker.yaml", "name: api\nscripts:\n  start: x\n  strat: y\n")
    out = report_of(
        write("config.yaml", "workers:\n  - name: api\n    worker_path: ./workers/api\n")
    )
    assert (
        "workers/api/iii.worker.yaml:4: scripts.strat: unknown key (did you mean scripts.start?)"
        in out
    )


def test_command_worker(write: Write, project: Path) -> None:
    path = write(
        "config.yaml",
        """
        workers:
          - name: probe
            supervise:
              command: [python3, -m, http.server]
              readiness: process
        """,
    )
    probe = load_config(path, env={}).worker("probe")
    assert probe is not None
    assert probe.kind is WorkerKind.COMMAND
    assert probe.supervise.command == ["python3", "-m", "http.server"]
    assert probe.supervise.readiness == "process"
    assert probe.working_dir == project
    assert probe.manifest is None


def test_user_worker_names_follow_the_name_rule(write: Write) -> None:
    out = report_of(write("config.yaml", "workers:\n  - name: ../x\n    supervise: {command: x}\n"))
    assert "workers[0].name: the worker name contains '..'" in out


# -- supervise: ---------------------------------------------------------------------------------

FULL_SUPERVISE = """
workers:
  - name: api
    supervise:
      restart: transient
      max_restarts: 3
      restart_window: 2m
      backoff: { initial: 250ms, max: 10s, multiplier: 3, jitter: 0, reset_after: 1m }
      success_exit_codes: [0, 3]
      success_signals: [TERM, SIGINT]
      restart_prevent_exit_codes: [127]
      critical: true
      autostart: false
      on_dependency_restart: restart
      readiness: notify
      start_timeout: 90s
      min_uptime: 2s
      ready_functions: [api::ping]
      health: { interval: 1s, timeout: 3s, kill_grace: 500ms, probe_function: api::health }
      reconnect_grace: 20s
      stop_signal: INT
      stop_timeout: 15s
      drain_timeout: 1s
      install: never
      install_timeout: 1h
      command: npm start
      env: { LOG_LEVEL: debug, III_NAMESPACE: blue }
      inherit_env: false
      limits: { memory: 512MiB, nofile: 4096 }
      log: { file: false, max_bytes: 1MiB, backups: 2, to_supervisor_log: false }
      replicas: 1
"""


def test_full_supervise_block(write: Write) -> None:
    api = load_config(write("config.yaml", FULL_SUPERVISE), env={}).worker("api")
    assert api is not None
    assert api.supervise == SuperviseSpec(
        restart=RestartMode.ON_FAILURE,
        max_restarts=3,
        restart_window=120.0,
        backoff=Backoff(initial=0.25, max=10.0, multiplier=3.0, jitter=0.0, reset_after=60.0),
        success_exit_codes=(0, 3),
        success_signals=(15, 2),
        restart_prevent_exit_codes=(127,),
        critical=True,
        autostart=False,
        on_dependency_restart="restart",
        readiness="notify",
        start_timeout=90.0,
        min_uptime=2.0,
        ready_functions=("api::ping",),
        health=Health(interval=1.0, timeout=3.0, kill_grace=0.5, probe_function="api::health"),
        reconnect_grace=20.0,
        stop_signal=2,
        stop_timeout=15.0,
        drain_timeout=1.0,
        install="never",
        install_timeout=3600.0,
        command="npm start",
        env={"LOG_LEVEL": "debug", "III_NAMESPACE": "blue"},
        inherit_env=False,
        limits=Limits(memory=512 * 2**20, nofile=4096),
        log=LogSettings(file=False, max_bytes=2**20, backups=2, to_supervisor_log=False),
    )


@pytest.mark.parametrize(
    ("alias", "mode"),
    [
        ("always", RestartMode.ALWAYS),
        ("permanent", RestartMode.ALWAYS),
        ("on-failure", RestartMode.ON_FAILURE),
        ("transient", RestartMode.ON_FAILURE),
        ("never", RestartMode.NEVER),
        ("temporary", RestartMode.NEVER),
    ],
)
def test_restart_aliases(write: Write, alias: str, mode: RestartMode) -> None:
    path = write(
        "config.yaml", f"workers:\n  - name: a\n    supervise: {{command: x, restart: {alias}}}\n"
    )
    assert load_config(path, env={}).workers[0].supervise.restart is mode


def test_supervise_errors_all_reported(write: Write) -> None:
    path = write(
        "config.yaml",
        """
        workers:
          - name: a
            supervise:
              command: x
              restat: always
              max_restarts: -1
              backoff: {initial: 1, jitter: 2, multiplyer: 2}
              success_exit_codes: [0, 300]
              readiness: tcp
              limits: {memory: 10MB}
              env: {PORT: 8080, III_URL: ws://x}
              replicas: 3
              health: 5s
        """,
    )
    out = report_of(path)
    expected = [
        "config.yaml:5: workers[0].supervise.restat: unknown key (did you mean supervise.restart?)",
        "config.yaml:6: workers[0].supervise.max_restarts: must be at least 0",
        "config.yaml:7: workers[0].supervise.backoff.initial: duration needs a unit (e.g. 1s)",
        "workers[0].supervise.backoff.jitter: must be between 0.0 and 1.0",
        "workers[0].supervise.backoff.multiplyer: unknown key (did you mean supervise.backoff.multiplier?)",
        "config.yaml:8: workers[0].supervise.success_exit_codes[1]: exit codes are integers from 0 to 255",
        "workers[0].supervise.readiness: must be one of bus, process, notify, fd",
        "workers[0].supervise.limits.memory: must be a size",
        'workers[0].supervise.env.PORT: must be a string, got an integer — quote the value: PORT: "…"',
        "workers[0].supervise.env.III_URL: RESERVED_ENV_OVERRIDE: III_URL is set by the supervisor",
        "workers[0].supervise.replicas: only 1 is supported for now",
        "workers[0].supervise.health: must be a mapping, got a string",
    ]
    for line in expected:
        assert line in out
    assert len(out.splitlines()) == len(expected)


def test_supervise_on_built_in_actor(write: Write) -> None:
    path = write("config.yaml", "workers:\n  - name: iii-state\n    supervise: {critical: true}\n")
    assert load_config(path, env={}).workers[0].supervise.critical is True
    path = write(
        "config.yaml", "workers:\n  - name: iii-engine-functions\n    supervise: {critical: true}\n"
    )
    assert "runs inside the supervisor process" in load_config(path, env={}).warnings[0]


def test_nice_is_a_niceness_from_minus_20_to_19(write: Write) -> None:
    path = write("config.yaml", "workers:\n  - name: a\n    supervise: {command: x, nice: 5}\n")
    assert load_config(path, env={}).workers[0].supervise.nice == 5
    path = write("config.yaml", "workers:\n  - name: a\n    supervise: {command: x}\n")
    assert load_config(path, env={}).workers[0].supervise.nice is None  # the supervisor's
    for bad, message in ((20, "must be between -20 and 19"), ("low", "must be an integer")):
        path = write(
            "config.yaml", f"workers:\n  - name: a\n    supervise: {{command: x, nice: {bad}}}\n"
        )
        assert f"workers[0].supervise.nice: {message}" in report_of(path)


def test_nice_when_ready_is_a_niceness_too_and_defaults_can_set_it(write: Write) -> None:
    path = write(
        "config.yaml",
        "workers:\n  - name: iii-observability\n    supervise: {nice_when_ready: 10}\n",
    )
    observability = load_config(path, env={}).worker("iii-observability")
    assert observability is not None and observability.supervise.nice_when_ready == 10
    injected = load_config(write("config.yaml", "workers: []\n"), env={})
    default = injected.worker("iii-observability")
    assert default is not None and default.supervise.nice_when_ready is None
    write("iii-supervisor.yaml", "defaults: {nice_when_ready: 3}\n")
    path = write("config.yaml", "workers:\n  - name: a\n    supervise: {command: x}\n")
    assert load(path, env={}).engine.worker("a").supervise.nice_when_ready == 3  # type: ignore[union-attr]
    path = write(
        "config.yaml", "workers:\n  - name: a\n    supervise: {command: x, nice_when_ready: -21}\n"
    )
    assert "workers[0].supervise.nice_when_ready: must be between -20 and 19" in report_of(path)


def test_limits_memory_from_manifest(write: Write) -> None:
    write("w/iii.worker.yaml", "name: w\nscripts: {start: x}\nresources: {memory: 256}\n")
    path = write(
        "config.yaml",
        "workers:\n  - name: w\n    worker_path: w\n    supervise: {limits: {memory: manifest}}\n",
    )
    assert load_config(path, env={}).workers[0].supervise.limits.memory == 256 * 2**20
    path = write(
        "config.yaml",
        "workers:\n  - name: c\n    supervise: {command: x, limits: {memory: manifest}}\n",
    )
    assert "'manifest' needs a manifest with resources.memory" in report_of(path)


def test_working_dir(write: Write, project: Path) -> None:
    (project / "run").mkdir()
    path = write(
        "config.yaml", "workers:\n  - name: c\n    supervise: {command: x, working_dir: run}\n"
    )
    assert load_config(path, env={}).workers[0].working_dir == project / "run"
    path = write(
        "config.yaml", "workers:\n  - name: c\n    supervise: {command: x, working_dir: gone}\n"
    )
    assert "workers[0].supervise.working_dir: directory gone does not exist" in report_of(path)


# -- depends_on ---------------------------------------------------------------------------------


def test_depends_on_resolves_aliases_and_drops_in_process_targets(write: Write) -> None:
    path = write(
        "config.yaml",
        """
        workers:
          - name: iii-state
          - name: api
            supervise: {command: x, depends_on: [state, iii-engine-functions, db]}
          - name: db
            supervise: {command: y}
        """,
    )
    api = load_config(path, env={}).worker("api")
    assert api is not None and api.supervise.depends_on == ("iii-state", "db")


def test_manifest_dependencies_on_local_workers_add_edges(write: Write) -> None:
    write("w/iii.worker.yaml", "name: w\nscripts: {start: x}\ndependencies: {db: ^1, remote: ^2}\n")
    path = write(
        "config.yaml",
        "workers:\n  - name: w\n    worker_path: w\n  - name: db\n    supervise: {command: y}\n",
    )
    assert load_config(path, env={}).workers[0].supervise.depends_on == ("db",)


def test_depends_on_self_and_three_cycle(write: Write) -> None:
    path = write(
        "config.yaml",
        """
        workers:
          - name: api
            supervise: {command: x, depends_on: [jobs]}
          - name: jobs
            supervise: {command: x, depends_on: [database]}
          - name: database
            supervise: {command: x, depends_on: [api, database]}
        """,
    )
    out = report_of(path)
    assert "dependency cycle: api -> jobs -> database -> api" in out
    assert "workers[2].supervise.depends_on: 'database' cannot depend on itself" in out


def test_depends_on_ignored_or_invalid_targets(write: Write) -> None:
    path = write(
        "config.yaml",
        """
        workers:
          - name: iii-exec
          - name: api
            supervise: {command: x, depends_on: [iii-exec, iii-bridge]}
        """,
    )
    config = load_config(path, env={})
    assert config.worker("api").supervise.depends_on == ()  # type: ignore[union-attr]
    assert sum("is not run by iii-supervisor" in w for w in config.warnings) == 2
    path = write(
        "config.yaml",
        "workers:\n  - name: bad\n    worker_path: ./nope\n  - name: a\n    supervise: {command: x, depends_on: [bad]}\n",
    )
    out = report_of(path)
    assert "unknown worker 'bad'" not in out  # its own error is enough
    assert "directory ./nope does not exist" in out


# -- iii-supervisor.yaml ------------------------------------------------------------------------


def test_defaults_merge_under_every_worker(write: Write) -> None:
    write(
        "iii-supervisor.yaml",
        """
        shutdown_timeout: 45s
        log_format: json
        defaults:
          install: never
          backoff: {initial: 1s, max: 5s}
          env: {A: "1"}
        """,
    )
    path = write(
        "config.yaml",
        """
        workers:
          - name: a
            supervise: {command: x, backoff: {max: 9s}, env: {B: "2"}}
          - name: iii-http
        """,
    )
    loaded = load(path, env={})
    a = loaded.engine.worker("a")
    assert a is not None
    assert a.supervise.install == "never"
    assert a.supervise.backoff == Backoff(initial=1.0, max=9.0)
    assert a.supervise.env == {"A": "1", "B": "2"}
    assert loaded.engine.worker("iii-http").supervise.install == "never"  # type: ignore[union-attr]
    assert loaded.settings.values == {"shutdown_timeout": 45.0, "log_format": "json"}
    assert loaded.settings.defaults["install"] == "never"
    assert loaded.settings.path is not None and loaded.settings.path.name == "iii-supervisor.yaml"


def test_supervisor_yaml_errors(write: Write, project: Path) -> None:
    write(
        "ops.yaml",
        """
        shutdown_timeout: 30
        sokcet: /tmp/x
        defaults:
          restart: sometimes
          depends_on: [a]
        """,
    )
    path = write("config.yaml", "workers: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, supervisor_yaml=project / "ops.yaml")
    out = str(info.value)
    assert "ops.yaml:1: shutdown_timeout: duration needs a unit (e.g. 30s)" in out
    assert "ops.yaml:2: sokcet: unknown key (did you mean socket?)" in out
    assert "ops.yaml:4: defaults.restart: must be one of always, on-failure, never" in out
    assert "ops.yaml:5: defaults.depends_on: not allowed in defaults" in out
    with pytest.raises(ConfigError, match="file not found"):
        load_config(path, env={}, supervisor_yaml=project / "missing.yaml")


def test_load_supervisor_settings_alone(write: Write) -> None:
    path = write("iii-supervisor.yaml", "watch: true\nsweep_grace: ${SWEEP:2s}\n")
    settings = load_supervisor_settings(path, env={})
    assert settings.values == {"watch": True, "sweep_grace": 2.0}
    assert load_supervisor_settings(None, env={}).values == {}


# -- check ----------------------------------------------------------------------------------


def test_check_json(write: Write) -> None:
    path = write(
        "config.yaml", "workers:\n  - name: a\n    supervise: {command: x, restart: sometimes}\n"
    )
    report = check_config(path, env={})
    assert not report.valid
    assert report.to_json() == {
        "valid": False,
        "errors": [
            {
                "file": str(path),
                "line": 3,
                "path": "workers[0].supervise.restart",
                "message": "must be one of always, on-failure, never "
                "(or permanent, transient, temporary)",
            }
        ],
        "warnings": [
            {"file": str(path), "line": 2, "path": "a", "message": report.warnings[0].message}
        ],
    }
    assert "not found on PATH" in report.warnings[0].message


def test_check_valid_and_strict(write: Write) -> None:
    path = write("config.yaml", "workers:\n  - name: iii-exec\n")
    report = check_config(path, env={})
    assert report.valid and report.config is not None
    assert len(report.warnings) == 1
    strict = check_config(path, env={}, strict=True)
    assert not strict.valid
    assert strict.warnings == ()
    assert "not implemented" in strict.errors[0].message


def test_problem_rendering() -> None:
    assert str(ConfigProblem("config.yaml", 3, "workers[0].name", "missing")) == (
        "config.yaml:3: workers[0].name: missing"
    )
    assert str(ConfigProblem("config.yaml", 3, "", "oops")) == "config.yaml:3: oops"
    assert str(ConfigProblem("x.yaml", None, "", "oops")) == "x.yaml: oops"
    error = ConfigError([ConfigProblem("a", 1, "p", "m"), ConfigProblem("b", None, "", "n")])
    assert str(error) == "a:1: p: m\nb: n"


def test_builtin_worker_lookup() -> None:
    http = builtin_worker("http")
    assert http is not None and http.name == "iii-http"
    numbered = builtin_worker("iii-http#1")
    assert numbered is not None and numbered.actor == "actors.http"
    assert builtin_worker("iii-exec") is None
    assert builtin_worker("api") is None
