"""The wiring of deploy/docker-compose.yml and deploy/k8s/: ports, volumes, health checks, env,
probes and security contexts agree with each other, with the Dockerfile and with the configs
they mount (which must load). docs/operations.md promises each of these."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.cli import build_parser
from supervisor.config import check_config, load
from supervisor.config.durations import parse_duration
from supervisor.supervision.runtime import SupervisionOptions

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
STOP_DEADLINE = SupervisionOptions().shutdown_timeout + 5.0  # workers, then the engine
IMAGE_UID = 10001  # the Dockerfile's USER


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def compose_env() -> dict[str, str]:
    """What compose gives the iii service, with ``${VAR:?...}`` taken from .env.example."""
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    env = {}
    for key, value in compose()["services"]["iii"]["environment"].items():
        m = re.fullmatch(r"\$\{(\w+):\?[^}]*\}", str(value))
        env[key] = example[m.group(1)] if m else str(value)
    return env


def config_ports(path: Path, env: dict[str, str]) -> dict[str, tuple[str, int]]:
    """(host, port) of the listener and iii-http in a config, as the loader resolves them."""
    cfg = load(path, env=env).engine
    http = cfg.worker("iii-http")
    assert http is not None and http.config is not None
    listener = cfg.listeners[0]
    return {
        "workers": (listener.host, listener.port),
        "http": (http.config["host"], int(http.config["port"])),
    }


# -- compose -----------------------------------------------------------------------------------


def test_compose_config_loads_and_runs_state_and_pubsub_on_redis() -> None:
    report = check_config(DEPLOY / "config.compose.yaml", env=compose_env())
    assert report.valid, report.errors
    # Only the built-ins that do not exist yet may warn.
    assert all(re.search(r"iii-(stream|queue) is not implemented", str(w)) for w in report.warnings)
    text = (DEPLOY / "config.compose.yaml").read_text()
    raw = yaml.safe_load(text)
    adapters = {
        w["name"]: w["config"]["adapter"]
        for w in raw["workers"]
        if "adapter" in w.get("config", {})
    }
    for name in ("iii-state", "iii-pubsub", "iii-stream"):
        assert adapters[name]["name"] == "redis"
        assert "${REDIS_HOST:redis}" in adapters[name]["config"]["redis_url"]
    assert adapters["iii-queue"]["name"] == "rabbitmq"
    assert "${RABBITMQ_HOST:rabbitmq}" in adapters["iii-queue"]["config"]["amqp_url"]


def test_compose_service_names_are_the_configs_hosts() -> None:
    services = compose()["services"]
    env = services["iii"]["environment"]
    assert env["REDIS_HOST"] in services and env["RABBITMQ_HOST"] in services
    assert services[env["REDIS_HOST"]]["image"].startswith("redis:")
    assert services[env["RABBITMQ_HOST"]]["image"].startswith("rabbitmq:")


def test_compose_publishes_http_everywhere_and_the_worker_port_on_loopback_only() -> None:
    ports = config_ports(DEPLOY / "config.compose.yaml", compose_env())
    published: dict[int, str] = {}
    for spec in compose()["services"]["iii"]["ports"]:
        parts = str(spec).split(":")
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        published[int(parts[-1])] = host_ip
    assert published == {ports["http"][1]: "0.0.0.0", ports["workers"][1]: "127.0.0.1"}
    # Inside the container both bind every interface, or the published ports reach nothing.
    assert ports["http"][0] == ports["workers"][0] == "0.0.0.0"
    for name in ("redis", "rabbitmq"):
        assert "ports" not in compose()["services"][name], f"{name} must not be published"


def test_compose_health_checks_and_start_order() -> None:
    services = compose()["services"]
    iii = services["iii"]
    assert iii["healthcheck"]["test"] == ["CMD", "iii-supervisor", "health", "--ready"]
    assert parse_duration(iii["healthcheck"]["start_period"]) >= 30
    for name in ("redis", "rabbitmq"):
        assert iii["depends_on"][name] == {"condition": "service_healthy"}
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")


def test_compose_stop_init_and_hardening() -> None:
    iii = compose()["services"]["iii"]
    assert iii["init"] is True
    assert iii["stop_signal"] == "SIGTERM"
    assert parse_duration(iii["stop_grace_period"]) > STOP_DEADLINE
    assert iii["read_only"] is True and "/tmp" in iii["tmpfs"]
    assert iii["cap_drop"] == ["ALL"]


def test_compose_volumes_are_named_and_the_config_is_the_one_up_reads() -> None:
    data = compose()
    declared = set(data["volumes"])
    iii = data["services"]["iii"]
    args = build_parser().parse_args(iii["command"])
    mounts = {}
    for service in data["services"].values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if not source.startswith("."):
                assert source in declared, f"volume {source} is not declared"
            if service is iii:
                mounts[target] = source
    assert (DEPLOY / mounts[str(args.config)]).resolve() == DEPLOY / "config.compose.yaml"
    state_dir = iii["environment"]["III_SUPERVISOR_STATE_DIR"]
    assert mounts[state_dir] in declared


def test_compose_secrets_come_from_env_and_the_example_lists_them() -> None:
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required >= {"REDIS_PASSWORD", "RABBITMQ_USER", "RABBITMQ_PASSWORD"}
    example = (DEPLOY / ".env.example").read_text()
    for var in required:
        assert re.search(rf"^{var}=", example, re.M), f"{var} missing from .env.example"
    assert "deploy/.env" in (REPO / ".gitignore").read_text().split()


# -- kubernetes --------------------------------------------------------------------------------

VARIANTS = ("single", "replicated")


def manifests(variant: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s" / variant).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            out[doc["kind"]] = doc
    return out


def container(variant: str) -> dict[str, Any]:
    (c,) = manifests(variant)["Deployment"]["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = c
    return result


def k8s_env(variant: str) -> dict[str, str]:
    """The container's environment, Secret references resolved from the example Secret."""
    docs = manifests(variant)
    secret = docs.get("Secret", {}).get("stringData", {})
    env = {}
    for item in container(variant).get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == docs["Secret"]["metadata"]["name"]
            env[item["name"]] = secret[ref["key"]]
    return env


def mounted_config(variant: str, tmp: Path) -> Path:
    docs = manifests(variant)
    c = container(variant)
    config = build_parser().parse_args(c["args"]).config
    mount = next(m for m in c["volumeMounts"] if str(config).startswith(m["mountPath"] + "/"))
    volumes = {v["name"]: v for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    path = tmp / Path(config).name
    path.write_text(docs["ConfigMap"]["data"][Path(config).name])
    return path


@pytest.mark.parametrize("variant", VARIANTS)
def test_k8s_config_loads_and_its_ports_are_the_containers(variant: str, tmp_path: Path) -> None:
    path = mounted_config(variant, tmp_path)
    env = k8s_env(variant)
    report = check_config(path, env=env)
    assert report.valid, report.errors
    ports = config_ports(path, env)
    declared = {p["name"]: p["containerPort"] for p in container(variant)["ports"]}
    assert declared == {"http": ports["http"][1], "workers": ports["workers"][1]}
    assert ports["http"][0] == ports["workers"][0] == "0.0.0.0"


@pytest.mark.parametrize("variant", VARIANTS)
def test_k8s_probes(variant: str) -> None:
    c = container(variant)
    assert c["startupProbe"]["exec"]["command"] == ["iii-supervisor", "health"]
    assert c["readinessProbe"]["exec"]["command"] == ["iii-supervisor", "health", "--ready"]
    assert c["livenessProbe"]["tcpSocket"]["port"] == "http"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe].get("timeoutSeconds", 1) <= c[probe]["periodSeconds"]
    # An exec probe starts an interpreter: not more often than every 5 s once started.
    assert c["readinessProbe"]["periodSeconds"] >= 5


@pytest.mark.parametrize("variant", VARIANTS)
def test_k8s_termination_resources_and_security(variant: str) -> None:
    pod = manifests(variant)["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > STOP_DEADLINE
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(variant)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert "memory" in c["resources"]["limits"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_k8s_volumes_cover_every_writable_path(variant: str) -> None:
    pod = manifests(variant)["Deployment"]["spec"]["template"]["spec"]
    c = container(variant)
    volumes = {v["name"] for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert set(mounts.values()) <= volumes
    # A read-only root filesystem: the state directory and /tmp must be volumes.
    assert k8s_env(variant)["III_SUPERVISOR_STATE_DIR"] in mounts
    assert "/tmp" in mounts


@pytest.mark.parametrize("variant", VARIANTS)
def test_k8s_service_selects_the_pods_and_publishes_only_http(variant: str) -> None:
    docs = manifests(variant)
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"] == labels
    service = docs["Service"]["spec"]
    assert service["selector"] == labels
    assert [p["targetPort"] for p in service["ports"]] == ["http"]


def test_k8s_replicated_variant_shares_redis_from_a_secret() -> None:
    docs = manifests("replicated")
    assert docs["Deployment"]["spec"]["replicas"] >= 2
    config = yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])
    adapters = {
        w["name"]: w["config"]["adapter"]
        for w in config["workers"]
        if "adapter" in w.get("config", {})
    }
    assert adapters["iii-state"] == {"name": "redis", "config": {"redis_url": "${REDIS_URL}"}}
    assert adapters["iii-pubsub"]["name"] == "redis"
    names = {e["name"] for e in container("replicated")["env"] if "valueFrom" in e}
    assert names == {"REDIS_URL", "AMQP_URL"}
