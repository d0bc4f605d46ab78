"""docker-compose.yml stays valid (`docker compose config -q`, no engine needed) and safe to start
on a host others can reach: ports on 127.0.0.1 unless the user opts in, no default passwords, no
anonymous Grafana, nothing that can stop a worker through the broker (Flower)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_is_valid() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_compose_has_the_services_the_design_names() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    assert {"redis", "postgres", "migrate", "worker", "trainer"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["worker"]["restart"] == "unless-stopped"
    assert services["trainer"]["profiles"] == ["train"]


# ${VAR:?message}: compose refuses to start without VAR; ${VAR:-default} / ${VAR-default}: a default.
REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]*\}$")
DEFAULTED = re.compile(r"\$\{\w+:?-([^}]*)\}")


def required(value: str) -> str | None:
    """The variable a `${VAR:?message}` value requires, else None."""
    match = REQUIRED.match(value)
    return match.group(1) if match else None


def services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def host_ip(port: str | int | dict[str, Any]) -> str | None:
    """The host address a published port binds to, variables at their defaults (None: every address)."""
    if isinstance(port, dict):
        return DEFAULTED.sub(r"\1", str(port.get("host_ip", ""))) or None
    parts = DEFAULTED.sub(r"\1", str(port)).split(":")
    return parts[0] if len(parts) == 3 else None


def test_every_published_port_binds_to_localhost_unless_the_user_opts_in() -> None:
    published = {(name, str(p)): host_ip(p) for name, service in services().items()
                 for p in service.get("ports", [])}
    assert published, "the monitoring profile publishes Grafana and Prometheus"
    assert {key: ip for key, ip in published.items() if ip != "127.0.0.1"} == {}


def test_host_ip_reads_the_forms_compose_accepts() -> None:
    assert host_ip("5555:5555") is None and host_ip(5555) is None
    assert host_ip("127.0.0.1:3000:3000") == "127.0.0.1"
    assert host_ip("${TOPICQ_BIND:-127.0.0.1}:3000:3000") == "127.0.0.1"
    assert host_ip("${TOPICQ_BIND:-0.0.0.0}:3000:3000") == "0.0.0.0"
    assert host_ip({"target": 3000, "published": 3000}) is None
    assert host_ip({"target": 3000, "host_ip": "127.0.0.1"}) == "127.0.0.1"


def test_no_default_passwords_every_secret_comes_from_the_environment() -> None:
    spec = services()
    secrets = {key: value for service in spec.values() for key, value in environment(service).items()
               if re.search(r"PASSWORD|SECRET", key) and not key.endswith("_FILE")}
    assert secrets, "PostgreSQL and Grafana take their passwords from the environment"
    assert {k: v for k, v in secrets.items() if not required(v)} == {}
    assert required(environment(spec["postgres"])["POSTGRES_PASSWORD"]) == "POSTGRES_PASSWORD"
    # Redis asks for a password, and the URLs the services use carry the same variables.
    command = spec["redis"]["command"]
    password = command[command.index("--requirepass") + 1]
    assert required(password) == "REDIS_PASSWORD"
    for name, service in spec.items():
        env = environment(service)
        if "REDIS_URL" in env:
            assert env["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD"), name
        if "DATABASE_URL" in env:
            assert ":${POSTGRES_PASSWORD" in env["DATABASE_URL"], name
    # Nothing else carries a literal credential: user:password@ only with a variable as password.
    for literal in re.findall(r"//[^/\s:@]*:([^@\s]*)@", (ROOT / "docker-compose.yml").read_text()):
        assert literal.startswith("${"), literal


def test_grafana_has_no_anonymous_access_and_its_admin_password_is_required() -> None:
    env = environment(services()["grafana"])
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED", "false").lower() == "false"
    assert required(env["GF_SECURITY_ADMIN_PASSWORD"]) == "GRAFANA_ADMIN_PASSWORD"


def test_nothing_in_compose_can_control_workers_through_the_broker() -> None:
    # Flower's pages need Celery's remote control, which the workers turn off (shared/wire/celery_config.py).
    text = (ROOT / "docker-compose.yml").read_text().lower()
    assert "flower" not in text
