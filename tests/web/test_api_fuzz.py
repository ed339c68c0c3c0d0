"""Property-based tests of the whole API from its own OpenAPI document (schemathesis): for
inputs valid and invalid by the document, every answer is documented, has the documented
shape, and is never a server error."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# Not negative_data_rejection: it wants unknown query parameters refused, which HTTP APIs
# (this one included) ignore on purpose. Invalid data is still generated and sent.
from services_ai_plugins.host import Host
from services_ai_plugins.lifecycle.packaging import package_dir
from services_ai_plugins.web.app import create_app
from tests.helpers import SAMPLE_PLUGIN, make_config

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _build() -> tuple[object, dict[str, str], Host]:
    """The app on a host of its own with the sample plugin installed. Built when the module is
    collected: schemathesis reads the document then (its lazy fixture loader does not work with
    this pytest); the folder goes when the run ends."""
    folder = Path(tempfile.mkdtemp(prefix="services-ai-fuzz-"))
    atexit.register(shutil.rmtree, folder, True)
    config = make_config(folder / "data", f"sqlite:///{folder / 'fuzz.db'}")
    host = Host(config, tasks="inline")
    host.db.upgrade()
    (folder / "p.zip").write_bytes(package_dir(SAMPLE_PLUGIN))
    host.registry.install(folder / "p.zip")
    tokens = {scope: host.accounts.create_token(scope)[1] for scope in ("admin", "publish")}
    return create_app(host), tokens, host


APP, TOKENS, HOST = _build()
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", APP, headers={"Authorization": f"Bearer {TOKENS['admin']}"}
)


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_documented(case: schemathesis.Case) -> None:
    scope = "publish" if (case.method, case.path) == ("POST", "/api/v1/events") else "admin"
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKENS[scope]}"}, checks=CHECKS)
