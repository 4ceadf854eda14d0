"""Dockerfile and docker-compose.yml: parsed and checked without a Docker engine."""

import fnmatch
import json
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DATA_VOLUME = "ganaug-data"


# --- docker-compose.yml ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


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


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(words(test))


def test_all_services_and_named_volumes_are_declared(compose, services):
    assert {"redis", "postgres", "api", "worker", "flower"} <= set(services)
    assert {"redis-data", "postgres-data", DATA_VOLUME} <= set(compose["volumes"])


def test_redis_persists_its_queue(services):
    command = words(services["redis"]["command"])
    assert command[command.index("--appendonly") + 1] == "yes"
    assert mounts(services["redis"])["redis-data"] == "/data"


def test_postgres_keeps_its_data_in_a_volume(services):
    assert mounts(services["postgres"])["postgres-data"] == "/var/lib/postgresql/data"


def test_worker_reserves_nvidia_gpus(services):
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_api_and_worker_share_image_data_volume_and_settings(services):
    api, worker = services["api"], services["worker"]
    assert (api["build"], api["image"]) == (worker["build"], worker["image"])
    data_dir = mounts(api)[DATA_VOLUME]
    assert mounts(worker)[DATA_VOLUME] == data_dir
    assert environment(api) == environment(worker)
    assert environment(api)["GANAUG_DATA_DIR"] == data_dir


@pytest.mark.parametrize(
    ("service", "expected"),
    [("redis", "redis-cli ping"), ("postgres", "pg_isready -U ganaug"), ("api", "/healthz")],
)
def test_healthchecks(services, service, expected):
    assert expected in healthcheck_text(services[service])


@pytest.mark.parametrize(
    ("service", "needs"),
    [("api", {"redis", "postgres"}), ("worker", {"redis", "postgres", "api"})],
)
def test_start_order_waits_for_healthy_dependencies(services, service, needs):
    depends_on = services[service]["depends_on"]
    assert set(depends_on) == needs
    assert all(depends_on[name]["condition"] == "service_healthy" for name in needs)


def test_urls_point_at_compose_services(services):
    env = environment(services["api"])
    broker = urlsplit(env["GANAUG_BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    database = urlsplit(env["GANAUG_DATABASE_URL"])
    postgres = environment(services["postgres"])
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.path == "/" + postgres["POSTGRES_DB"]
    flower_broker = urlsplit(environment(services["flower"])["CELERY_BROKER_URL"])
    assert flower_broker.hostname == "redis"


def test_commands_migrate_serve_and_work(services):
    api_command = " ".join(words(services["api"]["command"]))
    assert "ganaug migrate && ganaug serve --host 0.0.0.0 --port 8000" in api_command
    assert "8000:8000" in services["api"]["ports"]
    assert words(services["worker"]["command"]) == ["ganaug", "worker"]


def test_flower_is_optional(services):
    assert services["flower"]["profiles"] == ["monitoring"]
    assert "flower" in words(services["flower"]["command"])


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
    )
    assert result.returncode == 0, result.stderr


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions (NAME, arguments) per FROM stage; joins `\\` continuations, drops comments."""
    instructions, pending = [], ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
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


def arguments_of(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def test_dockerfile_is_multi_stage_and_copies_the_venv():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert all(arguments_of(s, "FROM")[0].startswith("python:3.11-slim") for s in stages)
    builder_name = arguments_of(stages[0], "FROM")[0].split()[-1]
    final_copies = arguments_of(stages[-1], "COPY")
    assert f"--from={builder_name} /opt/venv /opt/venv" in final_copies
    assert any("pip install ." in run for run in arguments_of(stages[0], "RUN"))


def test_final_stage_runs_as_fixed_non_root_user():
    final = dockerfile_stages()[-1]
    user = arguments_of(final, "USER")[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any("--uid 10001" in run and user in run for run in arguments_of(final, "RUN"))
    assert any(f"chown {user}" in run and "/data" in run for run in arguments_of(final, "RUN"))


def test_final_stage_serves_the_api_on_8000():
    final = dockerfile_stages()[-1]
    assert "8000" in " ".join(arguments_of(final, "EXPOSE")).split()
    command = json.loads(arguments_of(final, "CMD")[-1])
    assert command[:2] == ["ganaug", "serve"]
    assert command[command.index("--port") + 1] == "8000"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    healthcheck = arguments_of(final, "HEALTHCHECK")[-1]
    assert "urllib" in healthcheck and "http://127.0.0.1:8000/healthz" in healthcheck


def test_image_data_dir_matches_the_compose_volume(services):
    env = " ".join(arguments_of(dockerfile_stages()[-1], "ENV"))
    assert f"GANAUG_DATA_DIR={mounts(services['api'])[DATA_VOLUME]}" in env.split()
    assert "PYTHONUNBUFFERED=1" in env.split()
    assert "PATH=/opt/venv/bin:$PATH" in env.split()


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_builder_copies_what_pip_install_needs_and_dockerignore_keeps_it():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    sources = []
    for copy in arguments_of(dockerfile_stages()[0], "COPY"):
        parts = [p for p in copy.split() if not p.startswith("--")]
        sources += parts[:-1]
    packages = {"service", "workers", "training", "models"}
    assert {"pyproject.toml", project["readme"], *packages} <= set(sources)
    ignored = dockerignore_patterns()
    assert {".venv", ".git"} <= set(ignored)
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: missing from the repository"
        hits = [p for p in ignored if fnmatch.fnmatch(source, p)]
        assert not hits, f"COPY {source} is excluded by .dockerignore {hits}"
