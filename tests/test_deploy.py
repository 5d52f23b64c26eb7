"""What can be checked of the deployment files without Docker or systemd here: they parse, the
commands they run exist, the settings they set are real, and the image copies every package."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from admin.cli import cli
from store.config import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SETTINGS = {f"MAMORU_{name.upper()}" for name in Settings.model_fields}


def check_command(argv: list[str]) -> None:
    """``argv`` runs a `mamoru` subcommand that exists, or gunicorn on an importable app."""
    program = Path(argv[0]).name
    if program == "mamoru":
        assert argv[1] in cli.commands, f"no `mamoru {argv[1]}`"
        sub = cli.commands[argv[1]]
        if len(argv) > 2 and hasattr(sub, "commands") and not argv[2].startswith("-"):
            assert argv[2] in sub.commands, f"no `mamoru {argv[1]} {argv[2]}`"
    elif program == "gunicorn":
        module, _, attribute = argv[-1].partition(":")
        assert hasattr(importlib.import_module(module), attribute), argv[-1]
    else:
        pytest.fail(f"unexpected program {argv[0]}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_services_and_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "rabbitmq", "migrate", "web", "worker", "scheduler"} <= set(services)
    for name in ("migrate", "web", "worker", "scheduler"):
        service = services[name]
        entrypoint = service.get("entrypoint", ["mamoru"])
        check_command([*entrypoint, *service["command"]])
        for key in service["environment"]:
            assert key in SETTINGS, f"{name}: {key} is not a Mamoru setting"
    # The worker is the service to scale; it must not pin a container name or a host port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    for name in ("postgres", "rabbitmq", "web"):
        assert "healthcheck" in services[name], name
    assert {"postgres-data", "mamoru-data"} <= set(compose["volumes"])


def test_compose_takes_secrets_from_the_environment(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            secret = any(word in key for word in ("PASSWORD", "PASS", "SECRET"))
            if secret or key in ("MAMORU_DATABASE_URL", "MAMORU_BROKER_URL"):
                # A required variable (${NAME:?...}), never a value written in the file.
                assert re.search(r"\$\{[A-Z_]+:\?", str(value)), f"{name}: {key}"


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=str)
def test_systemd_units_run_existing_commands(unit: Path) -> None:
    lines = unit.read_text().splitlines()
    commands = [
        line.split("=", 1)[1] for line in lines if line.startswith(("ExecStart", "ExecStartPre"))
    ]
    assert commands
    for command in commands:
        check_command(shlex.split(command))
    assert "EnvironmentFile=/etc/mamoru/mamoru.env" in lines
    example = (DEPLOY / "systemd" / "mamoru.env.example").read_text()
    for key in re.findall(r"^#?(MAMORU_[A-Z_]+)=", example, re.MULTILINE):
        assert key in SETTINGS, key


def test_dockerfile_installs_every_package() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for package in ("store", "matcher", "crawler", "takedown", "admin"):
        assert f"COPY {package} {package}" in text
    assert 'ENTRYPOINT ["mamoru"]' in text
    assert "chromium" in text and "pip install" in text
