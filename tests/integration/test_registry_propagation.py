"""Registry changes made while two worker hosts run reach both of them without a restart."""

from __future__ import annotations

import time

import pytest

from tests.integration import Deployment, MakePlugin, Worker, lead

pytestmark = pytest.mark.integration

# Says which host called it: each worker has a data folder of its own. A sandboxed plugin sees
# nothing of its host (that is the point), so these workers run plugins in process: what this
# test proves is about the registry, not about isolation.
WHOAMI = """
import os

from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    return {"status": "success", "host": os.environ["SERVICES_AI_DATA_DIR"], "pid": os.getpid()}
"""

PROPAGATION_BOUND = 5.0  # seconds; the poll interval is 0.2 s
BATCH = {
    "SERVICES_AI_BATCH_SIZE": "5",
    "SERVICES_AI_PLUGIN_ISOLATION": "inline",
}  # small batches, both get some


def _hosts(deployment: Deployment, plugin_id: str, event_ids: list[str]) -> set[str]:
    return {r.result["host"] for r in deployment.results(plugin_id, event_ids)}


def _publish_leads(deployment: Deployment, start: int, count: int) -> list[str]:
    ids = deployment.publish_all(lead(i) for i in range(start, start + count))
    deployment.wait_done(ids)
    return ids


def _cached(worker: Worker) -> set[str]:
    """The plugin archives materialised in the worker's own cache (folders named by sha256)."""
    folder = worker.data_dir / "plugins"
    return {p.name for p in folder.iterdir() if (p / "manifest.json").is_file()} if folder.is_dir() else set()


def test_install_grant_revoke_disable_enable_reach_both_workers_without_restart(
    deployment: Deployment, make_plugin: MakePlugin
) -> None:
    """Proves, with two worker processes that are two hosts (own data folders, empty plugin
    caches): a plugin installed, granted and enabled after they started is called within a
    bounded time, by both hosts, each having materialised the archive from the database into
    its own cache; revoking its permission, then disabling it, stops every call on both;
    enabling it again brings the calls back. A witness plugin, granted all along, shows that
    both workers were processing events in every phase."""
    witness = deployment.install(make_plugin("witness", WHOAMI), grants=("lead_access",))
    workers = [deployment.start_worker(name, wait=False, **BATCH) for name in ("host-a", "host-b")]
    for worker in workers:
        worker.wait_ready()
    hosts = {str(w.data_dir) for w in workers}
    witness_sha = deployment.current_sha256(witness)
    assert all(_cached(w) <= {witness_sha} for w in workers)

    # Installed, granted, enabled after the workers started.
    roamer = deployment.install(make_plugin("roamer", WHOAMI), grants=("lead_access",))
    changed = time.monotonic()
    latency = deployment.probe(roamer, called=True, since=changed, timeout=PROPAGATION_BOUND)
    deployment.settle(changed)
    ids = _publish_leads(deployment, 0, 400)
    assert len(deployment.results(roamer, ids)) == 400, "some events after the enable missed the plugin"
    assert _hosts(deployment, roamer, ids) == hosts, "one host never called the new plugin"
    sha256 = deployment.current_sha256(roamer)
    assert all(sha256 in _cached(w) for w in workers), "a host has no materialised copy of the plugin"

    # Revoked: neither host calls it any more, while both keep working.
    deployment.host.registry.revoke(roamer, "lead_access", actor="integration-test")
    changed = time.monotonic()
    deployment.probe(roamer, called=False, since=changed, timeout=PROPAGATION_BOUND)
    deployment.settle(changed)
    ids = _publish_leads(deployment, 1000, 100)
    assert deployment.results(roamer, ids) == [], "called without its permission"
    assert _hosts(deployment, witness, ids) == hosts

    # Granted again but disabled: still not called.
    deployment.host.registry.grant(roamer, "lead_access", actor="integration-test")
    deployment.host.registry.disable(roamer, actor="integration-test")
    changed = time.monotonic()
    deployment.settle(changed)
    ids = _publish_leads(deployment, 2000, 100)
    assert deployment.results(roamer, ids) == [], "called while disabled"
    assert _hosts(deployment, witness, ids) == hosts

    # Enabled again: called again, on both hosts.
    deployment.host.registry.enable(roamer, actor="integration-test")
    changed = time.monotonic()
    deployment.probe(roamer, called=True, since=changed, timeout=PROPAGATION_BOUND)
    deployment.settle(changed)
    ids = _publish_leads(deployment, 3000, 100)
    assert len(deployment.results(roamer, ids)) == 100
    assert _hosts(deployment, roamer, ids) == hosts
    print(f"install -> first call on a worker: {latency:.2f}s")
