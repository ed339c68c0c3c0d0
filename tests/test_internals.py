"""Every private name of kombu and celery-batches the project relies on is fenced in
``services_ai_plugins.infra.internals`` (the fence) and still exists with the shape used: an upgrade
that moves one fails here, by name, instead of misbehaving in production."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from kombu.utils.imports import symbol_by_name

from services_ai_plugins.infra import broker
from services_ai_plugins.infra.internals import batches, embedded, redis

PRIVATE_NAMES = [*embedded.PRIVATE_NAMES, *redis.PRIVATE_NAMES, *batches.PRIVATE_NAMES]
FENCE = Path(embedded.__file__).resolve().parent
PACKAGE = FENCE.parents[1]
LIBRARIES = ("kombu", "celery_batches")


@pytest.mark.parametrize(
    ("owner", "name"), PRIVATE_NAMES, ids=[f"{o.__name__}.{n}" for o, n in PRIVATE_NAMES]
)
def test_each_private_name_still_exists(owner: object, name: str) -> None:
    # An attribute the library sets on its instances counts if its __init__ still sets it.
    init = getattr(owner, "__init__", None)
    set_in_init = inspect.isfunction(init) and f"self.{name}" in inspect.getsource(init)
    assert hasattr(owner, name) or set_in_init, (
        f"{owner!r} has no {name} any more: see services_ai_plugins/infra/internals/"
    )


def test_overridden_methods_keep_their_signatures() -> None:
    from kombu.transport import sqlalchemy as kombu_sql

    expected = {
        "_get": ["self", "queue"],
        "_put": ["self", "queue", "payload", "kwargs"],
        "_restore": ["self", "message"],
        "_size": ["self", "queue"],
        "_engine_from_config": ["self"],
    }
    for name, params in expected.items():
        found = list(inspect.signature(getattr(kombu_sql.Channel, name)).parameters)
        assert found == params, f"kombu's sqlalchemy Channel.{name}{tuple(found)} changed"


def test_the_transport_names_resolve_to_the_fenced_classes() -> None:
    assert symbol_by_name(broker.EMBEDDED_TRANSPORT) is embedded.Transport
    assert symbol_by_name(broker.REDIS_TRANSPORT) is redis.Transport


def _private_uses(path: Path) -> list[str]:
    """``lib_object._name`` uses and overrides of ``_name`` methods in subclasses of a library's
    classes, outside the fence."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            imported.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(
                (a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] in LIBRARIES
            )
    found = []
    for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
        bases = {
            b.value.id
            if isinstance(b, ast.Attribute) and isinstance(b.value, ast.Name)
            else getattr(b, "id", "")
            for b in cls.bases
        }
        if not bases & imported:
            continue
        own = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        own |= {
            t.id
            for n in cls.body
            if isinstance(n, ast.Assign | ast.AnnAssign)
            for t in ([n.target] if isinstance(n, ast.AnnAssign) else n.targets)
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in own
            ):
                found.append(f"{cls.name}: self.{node.attr}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            found += [f"imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in imported
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_other_module_uses_their_private_names() -> None:
    offenders = {}
    for path in sorted([*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "workers").rglob("*.py")]):
        if FENCE in path.parents:
            continue
        uses = _private_uses(path)
        if uses:
            offenders[str(path.relative_to(PACKAGE.parent))] = uses
    assert offenders == {}


def test_the_consumer_and_the_processor_agree_on_requeue() -> None:
    from services_ai_plugins.pipeline import processor

    assert batches.REQUEUE == processor.REQUEUE


def test_the_check_finds_a_private_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from celery_batches import Batches\nfrom kombu.transport import redis\n\n"
        "class Mine(Batches):\n    def flush(self):\n        return self._buffer, self.mine\n\n"
        "def f(qos):\n    return redis._private_thing\n",
        encoding="utf-8",
    )
    assert _private_uses(sample) == ["Mine: self._buffer", "redis._private_thing"]
