"""docker-compose.yml, docker-compose.cpu.yml and docker-compose.gpus.yml: what jobs rely on
when containers stop, a CPU-only variant and one worker per GPU (checked without Docker, like
tests/test_deploy.py)."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from core.settings import Settings
from tests.test_deploy import REPO, Deployment, command_of, environment, words


class ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's `!reset` tag (an override that removes a key) and `!override`
    (one that replaces a list instead of merging it)."""


ComposeLoader.add_constructor("!reset", lambda loader, node: RESET)
ComposeLoader.add_constructor(
    "!override", lambda loader, node: loader.construct_sequence(node, deep=True)
)
RESET = object()


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration}"
    return sum(float(n) * units[u] for n, u in parts)


def workers(d: Deployment) -> dict[str, dict]:
    return {n: s for n, s in d.ours().items() if command_of(d, s)[:2] == ["ganaug", "worker"]}


def check_workers_may_checkpoint_before_they_are_killed(d: Deployment) -> None:
    for name, service in workers(d).items():
        grace = float(
            environment(service).get(
                "GANAUG_WORKER_SHUTDOWN_GRACE_S", Settings().worker_shutdown_grace_s
            )
        )
        period = seconds(service.get("stop_grace_period", "10s"))  # Docker's default
        assert period >= grace + 10, f"{name}: killed {period} s after TERM, needs {grace} + 10"


def check_workers_are_health_checked_by_a_ping(d: Deployment) -> None:
    for name, service in workers(d).items():
        test = " ".join(words(service["healthcheck"]["test"]))
        assert "inspect ping" in test and "ganaug@" in test, f"{name}: not pinged"


CHECKS = [
    check_workers_may_checkpoint_before_they_are_killed,
    check_workers_are_health_checked_by_a_ping,
]


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return Deployment.from_repo()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_compose(deployment, check):
    check(deployment)


@pytest.mark.parametrize(
    "check, breaking",
    [
        (check_workers_may_checkpoint_before_they_are_killed, {"stop_grace_period": "10s"}),
        (check_workers_may_checkpoint_before_they_are_killed, {"stop_grace_period": None}),
        (check_workers_are_health_checked_by_a_ping, {"healthcheck": {"test": ["CMD", "true"]}}),
    ],
)
def test_each_check_can_fail(deployment, check, breaking):
    broken = copy.deepcopy(deployment)
    for key, value in breaking.items():
        if value is None:
            broken.services["worker"].pop(key)
        else:
            broken.services["worker"][key] = value
    with pytest.raises(AssertionError):
        check(broken)


def test_the_cpu_override_drops_the_gpu_reservation_and_trains_on_the_cpu(deployment):
    override = yaml.load((REPO / "docker-compose.cpu.yml").read_text(), ComposeLoader)
    assert set(override["services"]) == set(workers(deployment)), "it overrides the workers only"
    for name, service in override["services"].items():
        assert service["deploy"] is RESET, f"{name} still reserves a GPU"
        assert service["environment"]["GANAUG_DEVICE"] == "cpu"
    readme = (REPO / "README.md").read_text()
    assert "-f docker-compose.yml -f docker-compose.cpu.yml" in readme


def test_the_gpus_override_gives_each_worker_its_own_gpu():
    override = yaml.load((REPO / "docker-compose.gpus.yml").read_text(), ComposeLoader)
    services = override["services"]
    assert len(services) >= 2 and "worker" in services
    gpus = []
    for name, service in services.items():
        if name != "worker":  # the other workers are the worker service, on another GPU
            assert service["extends"] == {"file": "docker-compose.yml", "service": "worker"}
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "count" not in device
        gpus += device["device_ids"]
    assert sorted(gpus) == [str(i) for i in range(len(services))], "one GPU each, no GPU twice"
    docs = (REPO / "docs" / "training.md").read_text()
    assert "-f docker-compose.yml -f docker-compose.gpus.yml" in docs
