"""The deployment files: docker-compose.yml, Dockerfile and .dockerignore, checked without Docker.

They are read as data and held to what the code expects: every queue the broker declares has a
consumer, every app process gets the shared configuration, the secret key comes from the
environment, the broker keeps its messages, migrations run before the workers, one beat only,
and the image installs the project and runs as an unprivileged user.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement

from services_ai_plugins.config import Config
from services_ai_plugins.infra.broker import QUEUES

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

IMAGE = "services-ai-plugins:latest"
CORE_SERVICES = {"redis", "postgres", "migrate", "worker-events", "worker-background", "beat", "web"}
APP_SERVICES = {"migrate", "worker-events", "worker-background", "beat", "web"}
SHARED_ENV = ("DATABASE_URL", "REDIS_URL", "SERVICES_AI_SECRET_KEY")
#: The variables that name the broker (``Config.broker_url``).
BROKER_ENV = ("REDIS_URL", "BROKER_URL")
REQUIRED_VAR = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?[^}]+\}$")


# -- reading the files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    if current:
        logical.append(current)
    pairs = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        pairs.append((instruction.upper(), rest.strip()))
    return pairs


def argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Service -> condition (a plain list means ``service_started``)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def celery_role(service: dict[str, Any]) -> str | None:
    """``worker`` or ``beat`` for a service running ``celery -A workers ...``, else None."""
    args = argv(service)
    if args[:3] != ["celery", "-A", "workers"] or len(args) < 4:
        return None
    return args[3]


def queues_of(service: dict[str, Any]) -> set[str]:
    """The queues a Celery worker consumes (``-Q a,b``, ``-Qa,b``, ``--queues[=]a,b``)."""
    args = argv(service)
    found: set[str] = set()
    for i, arg in enumerate(args):
        value = None
        if arg in ("-Q", "--queues") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--queues="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-Q") and len(arg) > 2:
            value = arg[2:]
        if value is not None:
            found.update(q.strip() for q in value.split(",") if q.strip())
    return found


def worker_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if celery_role(svc) == "worker"}


def option_pairs(args: list[str]) -> dict[str, str]:
    """``--name value`` pairs of a command line (``redis-server --appendonly yes ...``)."""
    return {
        args[i][2:]: args[i + 1]
        for i in range(len(args) - 1)
        if args[i].startswith("--") and not args[i + 1].startswith("--")
    }


def replicas(service: dict[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def config_env_names() -> set[str]:
    """Every environment variable ``Config`` reads."""
    prefix = Config.model_config.get("env_prefix", "")
    names = set()
    for name, field in Config.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


# -- services ---------------------------------------------------------------------------------


def test_compose_spec_file_without_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose
    assert "x-app" in compose


def test_every_service_exists_and_the_core_ones_start_by_default(services: dict[str, Any]) -> None:
    assert CORE_SERVICES | {"web", "flower"} <= set(services)
    for name in CORE_SERVICES:
        assert not services[name].get("profiles"), f"{name} must start with a plain `docker compose up`"


def test_the_web_app_starts_by_default_with_a_health_check(services: dict[str, Any]) -> None:
    web = services["web"]
    assert not web.get("profiles"), "the web app must start with a plain `docker compose up`"
    assert argv(web)[:6] == ["services-ai", "web", "--host", "0.0.0.0", "--port", "8000"]
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    # one session key for all of its processes: a volume keeps the key file, or the variable
    assert any(str(v).endswith(":/var/lib/services-ai") for v in web.get("volumes", []))
    published = [str(p) for p in web.get("ports", [])]
    assert any(p.split(":")[-1] == "8000" for p in published), published
    assert depends_on(web).get("migrate") == "service_completed_successfully"


def test_app_services_use_the_image_built_from_this_repo(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    shared = compose["x-app"]
    assert shared["build"] in (".", {"context": "."})
    assert shared["image"] == IMAGE
    for name in APP_SERVICES:
        assert services[name]["image"] == IMAGE, name
        assert services[name]["build"] == shared["build"], name
        assert "container_name" not in services[name], f"{name}: a fixed name prevents scaling"


# -- configuration ----------------------------------------------------------------------------


def test_every_app_service_gets_the_shared_environment(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    shared = environment(compose["x-app"])
    assert set(SHARED_ENV) <= set(shared)
    for name in APP_SERVICES:
        env = environment(services[name])
        for var in SHARED_ENV:
            assert env.get(var) == shared[var], f"{name}: {var} differs from the x-app block"


def test_the_shared_environment_names_only_settings_the_code_reads(compose: dict[str, Any]) -> None:
    unknown = set(environment(compose["x-app"])) - config_env_names()
    assert not unknown, f"not read by services_ai_plugins.config.Config: {sorted(unknown)}"


def test_the_secret_key_is_a_required_variable_never_a_literal(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    for name, block in [("x-app", compose["x-app"]), *((n, services[n]) for n in APP_SERVICES)]:
        value = environment(block)["SERVICES_AI_SECRET_KEY"]
        match = REQUIRED_VAR.match(value)
        assert match, f"{name}: SERVICES_AI_SECRET_KEY must be ${{SERVICES_AI_SECRET_KEY:?...}}"
        assert match["name"] == "SERVICES_AI_SECRET_KEY"
    # Nor a Fernet key anywhere in the file (32 bytes, urlsafe base64: 44 characters ending "=").
    assert not re.search(r"[A-Za-z0-9_-]{43}=", COMPOSE_FILE.read_text(encoding="utf-8"))


def strings(node: object) -> list[str]:
    """Every string value (and mapping key) of a parsed YAML document."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*strings(k), *strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def test_interpolations_are_well_formed(compose: dict[str, Any]) -> None:
    for value in strings(compose):
        for match in re.finditer(r"\$(\{[^}]*\}?|[A-Za-z_]?)", value.replace("$$", "")):
            token = match.group(0)
            assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+]).*)?\}|\$[A-Za-z_]", token), (
                f"{token!r} in {value!r}"
            )


def test_the_urls_point_at_the_compose_services(compose: dict[str, Any], services: dict[str, Any]) -> None:
    env = environment(compose["x-app"])
    database = urlsplit(env["DATABASE_URL"])
    assert database.scheme.startswith("postgres")
    assert database.hostname == "postgres"
    assert "postgres" in services
    pg_env = environment(services["postgres"])
    assert database.path.lstrip("/") == pg_env["POSTGRES_DB"]
    assert database.username == pg_env["POSTGRES_USER"]
    # Both sides read the same variable, with the same default.
    password = env["DATABASE_URL"].split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password == pg_env["POSTGRES_PASSWORD"]

    broker = urlsplit(env["REDIS_URL"])
    assert broker.scheme == "redis"
    assert broker.hostname == "redis"


# -- the broker and the database --------------------------------------------------------------


def test_redis_persists_and_never_evicts_messages(compose: dict[str, Any], services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    args = argv(redis)
    assert args[0] == "redis-server"
    options = option_pairs(args)
    assert options.get("appendonly") == "yes"
    assert options.get("maxmemory-policy") == "noeviction"
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert "ping" in redis["healthcheck"]["test"]
    assert any(
        str(v).endswith(":/data") and str(v).split(":")[0] in compose["volumes"] for v in redis["volumes"]
    )


def test_postgres_is_checked_and_persisted(compose: dict[str, Any], services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:15")
    assert {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"} <= set(environment(postgres))
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert any(
        str(v).endswith(":/var/lib/postgresql/data") and str(v).split(":")[0] in compose["volumes"]
        for v in postgres["volumes"]
    )


# -- migrations, workers and beat -------------------------------------------------------------


def test_migrate_runs_once_after_postgres_is_healthy(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert argv(migrate) == ["services-ai", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert depends_on(migrate).get("postgres") == "service_healthy"


def test_workers_and_beat_run_celery_with_the_project_app(services: dict[str, Any]) -> None:
    assert celery_role(services["worker-events"]) == "worker"
    assert celery_role(services["worker-background"]) == "worker"
    assert celery_role(services["beat"]) == "beat"
    assert queues_of(services["worker-events"]) == {"events"}
    assert queues_of(services["worker-background"]) == {"widgets", "exports", "lifecycle"}


def test_every_broker_queue_has_a_consumer(services: dict[str, Any]) -> None:
    consumed: set[str] = set()
    for name, svc in worker_services(services).items():
        queues = queues_of(svc)
        assert queues, f"{name} names no queue (-Q): it would consume only the default one"
        consumed |= queues
    assert {"events", "widgets", "exports", "lifecycle"} <= consumed
    missing = set(QUEUES) - consumed
    assert not missing, f"queues with no worker in docker-compose.yml: {sorted(missing)}"
    unknown = consumed - set(QUEUES)
    assert not unknown, f"workers consume queues the broker does not declare: {sorted(unknown)}"


def test_workers_start_after_the_migration_succeeded(services: dict[str, Any]) -> None:
    workers = worker_services(services)
    assert {"worker-events", "worker-background"} <= set(workers)
    for name, svc in workers.items():
        deps = depends_on(svc)
        assert deps.get("migrate") == "service_completed_successfully", name
        assert deps.get("redis") == "service_healthy", name
        assert deps.get("postgres") == "service_healthy", name


def test_event_workers_scale(services: dict[str, Any]) -> None:
    assert replicas(services["worker-events"]) >= 2


def test_exactly_one_beat(services: dict[str, Any]) -> None:
    beats = [name for name, svc in services.items() if celery_role(svc) == "beat"]
    assert beats == ["beat"]
    assert replicas(services["beat"]) <= 1


def test_beat_keeps_its_schedule_file_in_a_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    from workers.celery_app import worker_settings

    beat = services["beat"]
    data_dir = environment(beat)["SERVICES_AI_DATA_DIR"]
    schedule = Path(worker_settings(Config(data_dir=Path(data_dir)))["beat_schedule_filename"])
    mounts = [str(v).split(":") for v in beat.get("volumes", [])]
    assert any(
        source in compose["volumes"] and schedule.is_relative_to(target) for source, target, *_ in mounts
    ), f"{schedule} is not on a named volume of beat"


# -- Flower -----------------------------------------------------------------------------------


def test_flower_is_behind_the_ops_profile_on_the_same_broker(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    flower = services["flower"]
    assert flower["profiles"] == ["ops"]
    assert flower["image"] == IMAGE
    assert flower["build"] == compose["x-app"]["build"]
    args = argv(flower)
    assert celery_role(flower) == "flower"
    assert "--address=0.0.0.0" in args
    assert "--port=5555" in args
    assert not any(a.startswith("--basic-auth") or a.startswith("--basic_auth") for a in args), (
        "credentials on the command line are visible to anyone who lists processes"
    )
    assert [str(p) for p in flower["ports"]] == ["${FLOWER_PORT:-5555}:5555"]
    # The workers' broker, however it is named; nothing that reaches the database or the secrets.
    shared, env = environment(compose["x-app"]), environment(flower)
    assert any(var in shared for var in BROKER_ENV)
    for var in BROKER_ENV:
        assert env.get(var) == shared.get(var), f"flower: {var} differs from the x-app block"
    assert env["SERVICES_AI_DATA_DIR"] == shared["SERVICES_AI_DATA_DIR"]
    assert not {"DATABASE_URL", "SERVICES_AI_SECRET_KEY", "POSTGRES_PASSWORD"} & set(env)
    assert "FLOWER_UNAUTHENTICATED_API" not in env
    assert env["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    assert depends_on(flower) == {"redis": "service_healthy"}


def test_no_profiled_service_requires_a_variable(compose: dict[str, Any], services: dict[str, Any]) -> None:
    """Compose interpolates the whole file before selecting profiles: a ``${VAR:?}`` in a
    service of a profile would stop every ``docker compose up``, profile or not."""
    shared_values = set(strings(compose["x-app"]))
    for name, service in services.items():
        if not service.get("profiles"):
            continue
        for value in strings(service):
            if value in shared_values:
                continue  # the x-app block, required of every app service anyway
            assert not re.search(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\?", value.replace("$$", "")), (
                f"{name}: {value!r}"
            )


def flower_guard(auth: str | None) -> subprocess.CompletedProcess[str]:
    """Flower's entrypoint as the container runs it (``$$`` is compose's ``$``), with
    ``FLOWER_BASIC_AUTH`` set to ``auth`` (or unset), in front of ``echo started``."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    entrypoint = [part.replace("$$", "$") for part in compose["services"]["flower"]["entrypoint"]]
    env = {"PATH": "/usr/bin:/bin"}
    if auth is not None:
        env["FLOWER_BASIC_AUTH"] = auth
    return subprocess.run(
        [*entrypoint, "echo", "started"], env=env, capture_output=True, text=True, timeout=10, check=False
    )


@pytest.mark.parametrize("auth", [None, "", "ops", "ops:", ":secret"])
def test_flower_refuses_to_start_without_basic_auth(auth: str | None) -> None:
    done = flower_guard(auth)
    assert done.returncode == 64
    assert done.stdout == ""
    assert "FLOWER_BASIC_AUTH=user:password" in done.stderr


@pytest.mark.parametrize("auth", ["ops:secret", "ops:s3:cret", "ops:a,admin:b"])
def test_flower_starts_with_basic_auth(auth: str) -> None:
    done = flower_guard(auth)
    assert (done.returncode, done.stdout, done.stderr) == (0, "started\n", "")


def test_the_image_installs_flower_and_the_dev_extra_keeps_it(dockerfile: list[tuple[str, str]]) -> None:
    """The requirements the image installs before the project are the dependencies and the
    ``ops`` extra (the Dockerfile's own snippet, run on pyproject.toml); ``dev`` holds ``ops``."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]
    assert any(Requirement(r).name == "flower" for r in extras["ops"])
    assert set(extras["ops"]) <= set(extras["dev"]), "scripts/setup --dev must install the ops tools too"

    runs = [rest for instr, rest in dockerfile if instr == "RUN" and "/tmp/requirements.txt" in rest]
    assert runs, "no RUN writes /tmp/requirements.txt"
    words = shlex.split(runs[0])
    code = words[words.index("-c") + 1]
    printed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
    ).stdout.splitlines()
    assert printed == [*pyproject["project"]["dependencies"], *extras["ops"]]


# -- the image --------------------------------------------------------------------------------


def test_dockerfile_base_workdir_and_command(dockerfile: list[tuple[str, str]]) -> None:
    froms = [rest for instr, rest in dockerfile if instr == "FROM"]
    assert froms
    assert froms[-1].split()[0] == "python:3.11-slim"
    assert ("WORKDIR", "/app") in dockerfile
    cmds = [rest for instr, rest in dockerfile if instr == "CMD"]
    assert cmds
    assert cmds[-1] == '["services-ai", "--help"]'


def test_dockerfile_installs_the_project_without_dev_extras(dockerfile: list[tuple[str, str]]) -> None:
    runs = " && ".join(rest for instr, rest in dockerfile if instr == "RUN")
    assert re.search(r"pip install (?:[^&;|]*\s)?\.(?:\s|$)", runs), "no `pip install .`"
    assert "[dev]" not in runs


def test_dockerfile_copies_every_package(dockerfile: list[tuple[str, str]]) -> None:
    copied: set[str] = set()
    for instr, rest in dockerfile:
        if instr == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            copied.update(p.rstrip("/") for p in parts[:-1])
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        p.rstrip("*").rstrip(".") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    needed = {"pyproject.toml", pyproject["project"]["readme"], "sample_plugin", *packages}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"


def test_the_image_does_not_run_as_root(dockerfile: list[tuple[str, str]]) -> None:
    users = [rest for instr, rest in dockerfile if instr == "USER"]
    assert users, "no USER line: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerignore_keeps_local_state_out_and_the_sources_in(dockerfile: list[tuple[str, str]]) -> None:
    # Docker's rule: the last pattern that matches decides; "!pattern" re-includes.
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        verdict = False
        for raw in patterns:
            keep = raw.startswith("!")
            pattern = raw.lstrip("!").strip("/")
            candidates = [pattern]
            if pattern.startswith("**/"):
                candidates += [pattern[3:], "*/" + pattern[3:]]
            if keep:
                if any(fnmatch.fnmatchcase(path, c) for c in candidates):
                    verdict = False
            elif any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
                verdict = True
        return verdict

    for path in (
        ".venv",
        ".git",
        ".services_ai",
        ".env",
        "tests",
        ".pytest_cache",
        "services_ai_plugins/__pycache__",
        "scripts/setup",
    ):
        assert ignored(path), f"{path} would be sent to the build"
    for instr, rest in dockerfile:
        if instr == "COPY":
            for source in [p for p in rest.split() if not p.startswith("--")][:-1]:
                assert not ignored(source.rstrip("/")), (
                    f".dockerignore hides {source}, which the Dockerfile copies"
                )


def test_readme_describes_the_compose_deployment() -> None:
    """The README says what `docker compose up` starts; the names must be the file's."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docker compose up" in readme
    services = set(yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"])
    for name in ("redis", "postgres", "migrate", "worker-events", "worker-background", "beat", "web"):
        assert name in services
    for word in ("Redis", "PostgreSQL", "migrate", "worker-events", "beat"):
        assert word in readme
