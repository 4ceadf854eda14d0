"""Dockerfile and docker-compose.yml: the properties a deployment relies on, without Docker.

Each `check_*` raises AssertionError naming the property that broke. The tests run every
check on the real files, and on copies broken one way each, to show that every check fails
when its property does.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from core.queue import make_celery
from core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH|(^|_)KEY$", re.IGNORECASE)
LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}
# ${VAR} or ${VAR:?message}; not ${VAR:-default}, whose default is written in the file.
REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$")


# --- parsing --------------------------------------------------------------------------------


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """Instructions (NAME, arguments) per FROM stage; joins `\\` continuations, drops comments."""
    instructions, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also allowed between continuation lines
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        name, _, arguments = (pending + line).partition(" ")
        instructions.append((name.upper(), arguments.strip()))
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for name, arguments in instructions:
        if name == "FROM":
            stages.append([])
        if stages:  # ARG may precede the first FROM
            stages[-1].append((name, arguments))
    return stages


@dataclass
class Deployment:
    compose: dict
    stages: list[list[tuple[str, str]]]  # the Dockerfile
    pyproject: dict
    dockerignore: list[str]
    env_example: dict[str, str]  # .env.example: the variables an operator sets

    @classmethod
    def from_repo(cls) -> Deployment:
        ignore = (REPO / ".dockerignore").read_text().splitlines()
        example = (REPO / ".env.example").read_text().splitlines()
        return cls(
            env_example=dict(
                line.split("=", 1) for line in example if "=" in line and not line.startswith("#")
            ),
            compose=yaml.safe_load((REPO / "docker-compose.yml").read_text()),
            stages=dockerfile_stages((REPO / "Dockerfile").read_text()),
            pyproject=tomllib.loads((REPO / "pyproject.toml").read_text()),
            dockerignore=[p.strip() for p in ignore if p.strip() and not p.startswith("#")],
        )

    @property
    def services(self) -> dict[str, dict]:
        return self.compose["services"]

    @property
    def final(self) -> list[tuple[str, str]]:
        return self.stages[-1]

    def ours(self) -> dict[str, dict]:
        """The services that run the image built from our Dockerfile."""
        return {name: s for name, s in self.services.items() if "build" in s}

    def backing(self) -> dict[str, dict]:
        """The stateful services ours need (redis, postgres): not ours, not optional."""
        return {
            name: s for name, s in self.services.items() if "build" not in s and "profiles" not in s
        }


def words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def arguments_of(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    pairs = (word.split("=", 1) for env in arguments_of(stage, "ENV") for word in shlex.split(env))
    return dict(pair for pair in pairs if len(pair) == 2)


def command_of(deployment: Deployment, service: dict) -> list[str]:
    """The service's command; the image's CMD for our services that set none."""
    if "command" in service:
        return words(service["command"])
    return json.loads(arguments_of(deployment.final, "CMD")[-1]) if "build" in service else []


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def mounts(service: dict) -> dict[str, str]:
    """Volume source -> container path, for short ("src:dst[:mode]") and long syntax."""
    result = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        result[source] = target
    return result


def published(service: dict) -> list[tuple[str, str]]:
    """(host port, container port) of every published port."""
    return [(host, container) for _, host, container in published_on(service)]


def published_on(service: dict) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of every published port; address "" is
    every interface."""
    result = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            address = str(port.get("host_ip", ""))
            result.append((address, str(port.get("published", "")), str(port["target"])))
        else:
            address, _, rest = str(port).rpartition(":")  # [address:]host:container
            address, _, host = address.rpartition(":") if address.count(":") else ("", "", address)
            result.append((address, host, rest))
    return result


def option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def probed_port(test: str | list[str]) -> str | None:
    """The port of the URL a healthcheck's test fetches."""
    found = re.search(
        r"https?://[^/:'\"\s]+:(\d+)", test if isinstance(test, str) else " ".join(test)
    )
    return found.group(1) if found else None


def url_password(value: str) -> str | None:
    """The password in a URL's user info (by hand: `${VAR:?message}` would end urlsplit's)."""
    _, scheme_found, rest = value.partition("://")
    userinfo, at_found, _ = rest.rpartition("@")
    if not (scheme_found and at_found):
        return None
    return userinfo.partition(":")[2] or None


def variable(value: str) -> str:
    """`VAR` for a reference `${VAR...}`, else the value itself."""
    return re.sub(r"^\$\{([A-Za-z0-9_]+)[^}]*\}$", r"\1", value)


# --- checks ---------------------------------------------------------------------------------


def check_every_service_has_a_healthcheck(d: Deployment) -> None:
    for name, service in d.services.items():
        check = service.get("healthcheck") or {}
        test = words(check.get("test", []))
        assert test and test[0] != "NONE" and not check.get("disable"), f"{name}: no healthcheck"
    assert arguments_of(d.final, "HEALTHCHECK"), "the image has no HEALTHCHECK"


def check_dependencies_wait_until_healthy(d: Deployment) -> None:
    for name, service in d.services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        for needed, how in depends_on.items():
            assert needed in d.services, f"{name} depends on unknown {needed}"
            assert how.get("condition") == "service_healthy", f"{name} starts before {needed}"
        for value in environment(service).values():  # whoever talks to a service waits for it
            host = urlsplit(value).hostname if "://" in value else None
            if host in d.services:
                assert host in depends_on, f"{name} uses {host} without waiting for it"


def check_image_runs_as_non_root(d: Deployment) -> None:
    users = arguments_of(d.final, "USER")
    assert users, "the final stage has no USER: it runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"USER {user}"
    runs = " ".join(arguments_of(d.final, "RUN"))
    created = re.search(rf"useradd\b[^&;]*--uid (\d+)[^&;]*\b{re.escape(user)}\b", runs)
    assert created and int(created.group(1)) != 0, f"user {user} is not created with a uid"
    data_dir = image_env(d.final)["GANAUG_DATA_DIR"]
    assert re.search(rf"chown {re.escape(user)}\S* [^&;]*{re.escape(data_dir)}", runs), (
        f"{user} cannot write {data_dir}"
    )
    for name, service in d.ours().items():
        assert str(service.get("user", user)).split(":")[0] not in {"root", "0"}, name


def check_worker_reserves_a_gpu(d: Deployment) -> None:
    workers = [s for s in d.ours().values() if command_of(d, s)[:2] == ["ganaug", "worker"]]
    assert workers, "no service runs `ganaug worker`"
    for worker in workers:
        resources = worker.get("deploy", {}).get("resources", {})
        devices = resources.get("reservations", {}).get("devices", [])
        assert any("gpu" in device.get("capabilities", []) for device in devices), "no GPU"


def check_ports(d: Deployment) -> None:
    for name, service in d.backing().items():
        assert not published(service), f"{name} is published on the host"
    exposed = " ".join(arguments_of(d.final, "EXPOSE")).split()
    for name, service in d.ours().items():
        command = command_of(d, service)
        if command[:2] != ["ganaug", "serve"]:
            assert not published(service), f"{name} serves no HTTP but publishes a port"
            continue
        port = option(command, "--port")
        assert option(command, "--host") == "0.0.0.0", f"{name} is unreachable from outside"
        assert port in exposed, f"{name} serves on {port}, the image exposes {exposed}"
        assert [c for _, c in published(service)] == [port], f"{name} publishes the wrong port"
        assert probed_port(service["healthcheck"]["test"]) == port, f"{name}: healthcheck port"
    image_port = option(json.loads(arguments_of(d.final, "CMD")[-1]), "--port")
    assert probed_port(arguments_of(d.final, "HEALTHCHECK")[-1]) == image_port, (
        "the image's HEALTHCHECK probes another port than its CMD serves on"
    )


def check_only_the_api_beyond_loopback(d: Deployment) -> None:
    for name, service in d.services.items():
        if command_of(d, service)[:2] == ["ganaug", "serve"]:
            continue  # the API: keys and trusted hosts guard it
        for address, host, _ in published_on(service):
            assert address in LOOPBACK, f"{name} publishes {host} beyond the host's loopback"


def check_flower_asks_for_a_password(d: Deployment) -> None:
    flower = d.services["flower"]
    auth = environment(flower).get("FLOWER_BASIC_AUTH") or option(
        command_of(d, flower), "--basic_auth"
    )
    assert auth and REFERENCE.match(auth), "flower without basic auth from the environment"


def check_flower_sees_tasks(d: Deployment) -> None:
    """The API and the worker send Celery task events by default, as the Celery app each
    builds from its environment shows: without them flower lists no task."""
    for name in ("api", "worker"):
        value = environment(d.services[name]).get("GANAUG_TASK_EVENTS", "false")
        default = re.fullmatch(r"\$\{GANAUG_TASK_EVENTS:-(\w+)\}", value)
        settings = Settings(
            task_events=default.group(1) if default else value, broker_url="redis://redis:6379/0"
        )
        conf = make_celery(settings).conf
        assert conf.worker_send_task_events and conf.task_send_sent_event, f"{name}: no events"


def check_credentials_come_from_the_env_file(d: Deployment) -> None:
    """Every variable the file needs is named in .env.example, with no real secret in it."""
    needed = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", yaml.safe_dump(d.compose)))
    assert needed, "docker-compose.yml names no variable"
    missing = needed - set(d.env_example)
    assert not missing, f".env.example does not name {sorted(missing)}"
    for key, value in d.env_example.items():
        if SECRET_KEY.search(key):
            assert "change-me" in value, f".env.example holds a real-looking {key}"


def check_volumes(d: Deployment) -> None:
    declared = set(d.compose.get("volumes") or {})
    used = {source for s in d.services.values() for source in mounts(s) if "/" not in source}
    assert used == declared, f"volumes used {used} != declared {declared}"
    for name, service in d.backing().items():
        assert set(mounts(service)) & declared, f"{name} keeps its data in the container"
    redis = words(d.services["redis"]["command"])
    assert redis[redis.index("--appendonly") + 1] == "yes", "queued jobs die with redis"
    data_dir = image_env(d.final)["GANAUG_DATA_DIR"]
    shared = set()
    for name, service in d.ours().items():
        assert environment(service).get("GANAUG_DATA_DIR", data_dir) == data_dir, name
        shared |= {source for source, target in mounts(service).items() if target == data_dir}
        assert any(t == data_dir for t in mounts(service).values()), f"{name}: data not shared"
    assert len(shared) == 1 and shared <= declared, f"API and worker see different data {shared}"


def check_no_hard_coded_secrets(d: Deployment) -> None:
    for name, service in d.services.items():
        for key, value in environment(service).items():
            if SECRET_KEY.search(key):
                assert REFERENCE.match(value), f"{name}: {key} is written in the file"
            password = url_password(value)
            if password is not None:
                assert REFERENCE.match(password), f"{name}: {key} carries a password"


def check_urls_point_at_compose_services(d: Deployment) -> None:
    postgres = environment(d.services["postgres"])
    brokers = set()
    for name, service in d.ours().items():
        env = environment(service)
        broker, database = urlsplit(env["GANAUG_BROKER_URL"]), urlsplit(env["GANAUG_DATABASE_URL"])
        assert broker.scheme == "redis" and broker.hostname in d.services, name
        assert (database.hostname, database.port) == ("postgres", 5432), name
        assert database.username == postgres["POSTGRES_USER"], name
        assert variable(url_password(env["GANAUG_DATABASE_URL"]) or "") == variable(
            postgres["POSTGRES_PASSWORD"]
        ), f"{name} logs in with another password than postgres has"
        assert database.path == "/" + postgres["POSTGRES_DB"], name
        brokers.add(env["GANAUG_BROKER_URL"])
    flower = environment(d.services["flower"])["CELERY_BROKER_URL"]
    assert brokers == {flower}, f"flower watches {flower}, ganaug uses {brokers}"


def check_api_processes_share_rate_limits(d: Deployment) -> None:
    """The api's process count comes from the env file, and its processes count rate limits
    in redis together (in memory each would allow a key the whole limit)."""
    env = environment(d.services["api"])
    workers = env.get("GANAUG_SERVE_WORKERS", "")
    assert re.fullmatch(r"\$\{GANAUG_SERVE_WORKERS:-[1-9]\d*\}", workers), workers
    storage = urlsplit(env.get("GANAUG_RATE_LIMIT_STORAGE_URL", "memory://"))
    assert storage.scheme == "redis" and storage.hostname in d.services, storage


def check_image_builds_from_the_packages(d: Deployment) -> None:
    builder, final = d.stages[0], d.final
    assert len(d.stages) >= 2, "not multi-stage"
    assert any("pip install ." in run for run in arguments_of(builder, "RUN")), "nothing built"
    assert not any("pip install" in run for run in arguments_of(final, "RUN")), "final builds"
    builder_name = arguments_of(builder, "FROM")[0].split()[-1]
    assert f"--from={builder_name} /opt/venv /opt/venv" in arguments_of(final, "COPY")
    sources = []
    for copied in arguments_of(builder, "COPY"):
        parts = [p for p in copied.split() if not p.startswith("--")]
        sources += parts[:-1]
    setuptools = d.pyproject["tool"]["setuptools"]
    needed = {"pyproject.toml", d.pyproject["project"]["readme"]}
    needed |= {pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]}
    assert needed <= set(sources), f"the builder does not copy {needed - set(sources)}"
    scripts = d.pyproject["project"]["scripts"]
    assert json.loads(arguments_of(final, "CMD")[-1])[0] in scripts, "CMD is not our command"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: missing from the repository"
        hits = [p for p in d.dockerignore if fnmatch.fnmatch(source, p)]
        assert not hits, f"COPY {source} is excluded by .dockerignore {hits}"
    assert {".venv", ".git", ".env"} <= set(d.dockerignore), "secrets or venv in the context"


CHECKS = [
    check_every_service_has_a_healthcheck,
    check_dependencies_wait_until_healthy,
    check_image_runs_as_non_root,
    check_worker_reserves_a_gpu,
    check_ports,
    check_only_the_api_beyond_loopback,
    check_flower_asks_for_a_password,
    check_flower_sees_tasks,
    check_credentials_come_from_the_env_file,
    check_volumes,
    check_no_hard_coded_secrets,
    check_urls_point_at_compose_services,
    check_api_processes_share_rate_limits,
    check_image_builds_from_the_packages,
]


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return Deployment.from_repo()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_deployment(deployment, check):
    check(deployment)


# --- each check fails when its property breaks ---------------------------------------------


def _replace(stage: list[tuple[str, str]], name: str, arguments: str) -> None:
    stage[:] = [(n, arguments if n == name else a) for n, a in stage]


def _set_env(service: dict, key: str, value: str) -> None:
    service["environment"] = {**environment(service), key: value}


BREAKS: dict[str, tuple[Callable, Callable[[Deployment], None]]] = {
    "worker without healthcheck": (
        check_every_service_has_a_healthcheck,
        lambda d: d.services["worker"].update(healthcheck={"disable": True}),
    ),
    "flower without healthcheck": (
        check_every_service_has_a_healthcheck,
        lambda d: d.services["flower"].pop("healthcheck"),
    ),
    "api starts when postgres has started": (
        check_dependencies_wait_until_healthy,
        lambda d: d.services["api"]["depends_on"]["postgres"].update(condition="service_started"),
    ),
    "worker does not wait for redis": (
        check_dependencies_wait_until_healthy,
        lambda d: d.services["worker"]["depends_on"].pop("redis"),
    ),
    "image runs as root": (
        check_image_runs_as_non_root,
        lambda d: _replace(d.final, "USER", "root"),
    ),
    "compose runs the worker as root": (
        check_image_runs_as_non_root,
        lambda d: d.services["worker"].update(user="0:0"),
    ),
    "worker reserves no GPU": (
        check_worker_reserves_a_gpu,
        lambda d: d.services["worker"].pop("deploy"),
    ),
    "postgres published on the host": (
        check_ports,
        lambda d: d.services["postgres"].update(ports=["5432:5432"]),
    ),
    "flower published on every interface": (
        check_only_the_api_beyond_loopback,
        lambda d: d.services["flower"].update(ports=["5555:5555"]),
    ),
    "postgres published beyond loopback (long syntax)": (
        check_only_the_api_beyond_loopback,
        lambda d: d.services["postgres"].update(ports=[{"target": 5432, "published": 5432}]),
    ),
    "flower without basic auth": (
        check_flower_asks_for_a_password,
        lambda d: d.services["flower"].update(
            environment={"CELERY_BROKER_URL": "redis://redis:6379/0"}
        ),
    ),
    "worker sends no task events": (
        check_flower_sees_tasks,
        lambda d: _set_env(d.services["worker"], "GANAUG_TASK_EVENTS", "${GANAUG_TASK_EVENTS:-0}"),
    ),
    "api sends no task-sent events": (
        check_flower_sees_tasks,
        lambda d: d.services["api"].update(environment={}),
    ),
    "a variable the env file does not name": (
        check_credentials_come_from_the_env_file,
        lambda d: _set_env(d.services["api"], "GANAUG_SECRET_SALT", "${GANAUG_SECRET_SALT:?}"),
    ),
    "a real password in .env.example": (
        check_credentials_come_from_the_env_file,
        lambda d: d.env_example.update(POSTGRES_PASSWORD="hunter2"),
    ),
    "api publishes another port than it serves": (
        check_ports,
        lambda d: d.services["api"].update(ports=["8000:8080"]),
    ),
    "api serves on localhost only": (
        check_ports,
        lambda d: d.services["api"].update(command=["ganaug", "serve", "--port", "8000"]),
    ),
    "postgres data in the container": (
        check_volumes,
        lambda d: d.services["postgres"].pop("volumes"),
    ),
    "worker sees another data directory": (
        check_volumes,
        lambda d: d.services["worker"].update(volumes=["ganaug-data:/elsewhere"]),
    ),
    "password written in the file": (
        check_no_hard_coded_secrets,
        lambda d: _set_env(d.services["postgres"], "POSTGRES_PASSWORD", "ganaug"),
    ),
    "password written in a URL": (
        check_no_hard_coded_secrets,
        lambda d: _set_env(
            d.services["api"], "GANAUG_DATABASE_URL", "postgresql://ganaug:pw@postgres:5432/ganaug"
        ),
    ),
    "password with a default written in the file": (
        check_no_hard_coded_secrets,
        lambda d: _set_env(d.services["postgres"], "POSTGRES_PASSWORD", "${POSTGRES_PASSWORD:-pw}"),
    ),
    "flower watches another broker": (
        check_urls_point_at_compose_services,
        lambda d: _set_env(d.services["flower"], "CELERY_BROKER_URL", "redis://redis:6379/1"),
    ),
    "api processes count rate limits each in memory": (
        check_api_processes_share_rate_limits,
        lambda d: _set_env(d.services["api"], "GANAUG_RATE_LIMIT_STORAGE_URL", "memory://"),
    ),
    "api process count not from the env file": (
        check_api_processes_share_rate_limits,
        lambda d: _set_env(d.services["api"], "GANAUG_SERVE_WORKERS", "4"),
    ),
    "a package is not copied into the image": (
        check_image_builds_from_the_packages,
        lambda d: d.pyproject["tool"]["setuptools"]["packages"]["find"]["include"].append("extra*"),
    ),
    "the CLI package is ignored by .dockerignore": (
        check_image_builds_from_the_packages,
        lambda d: d.dockerignore.append("ganaug"),
    ),
}


@pytest.mark.parametrize("broken", BREAKS, ids=str)
def test_each_check_can_fail(deployment, broken):
    check, breaking = BREAKS[broken]
    copied = copy.deepcopy(deployment)
    breaking(copied)
    with pytest.raises(AssertionError):
        check(copied)


# --- the real tool, where installed ---------------------------------------------------------


def compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_docker_compose_accepts_the_file():
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither the `docker compose` plugin nor `docker-compose` is installed")
    result = subprocess.run(
        [*cli, "-f", "docker-compose.yml", "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "POSTGRES_PASSWORD": "checked-by-the-tests",
            "FLOWER_BASIC_AUTH": "checked:by-the-tests",
        },
    )
    assert result.returncode == 0, result.stderr
