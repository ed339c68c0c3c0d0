"""Data exports: gated by data_export and the data's own permission; rows as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from services_ai_plugins.errors import InputError
from services_ai_plugins.features.exports import csv_cell
from services_ai_plugins.host import Host
from services_ai_plugins.lifecycle.runtime import PluginRuntime
from services_ai_plugins.pipeline.processor import Incoming
from tests.helpers import SAMPLE_PLUGIN, manifest_for, write_plugin

EXPORTER = """
from services_ai_plugins import hookimpl

@hookimpl
def data_export(export_type, start_date, end_date, filters, context):
    rows = [{"lead": r["id"], "email_domain": (r.get("email") or "@").split("@")[1]}
            for r in context.get("records", [])]
    rows.append({"lead": "=HYPERLINK(\\"http://evil\\")", "note": {"nested": [1, 2]}})
    return rows
"""


@pytest.fixture
def runtime(host: Host, tmp_path: Path) -> Iterator[PluginRuntime]:
    folder = write_plugin(
        tmp_path / "exp",
        manifest_for("Exporter", hooks=["data_export"], permissions=["data_export", "lead_access"]),
        EXPORTER,
    )
    host.registry.install(folder)
    host.registry.grant("exporter", "data_export")
    host.registry.enable("exporter")
    rt = host.runtime
    host.processor.process(
        [
            Incoming(
                {
                    "type": "lead.created",
                    "event_id": f"e{i}",
                    "occurred_at": f"2026-01-0{i}T10:00:00Z",
                    "data": {"id": f"L{i}", "email": f"p{i}@acme.io"},
                }
            )
            for i in range(1, 4)
        ]
    )
    yield rt
    rt.close()


def test_leads_export_needs_lead_access_too(host: Host, runtime: PluginRuntime) -> None:
    service = host.exports
    job = service.run(service.create("leads"))
    assert job["plugins"] == {}
    assert job["error"] == "no plugin holds the permissions for this export"
    host.registry.grant("exporter", "lead_access")
    job = service.run(service.create("leads", "2026-01-02", "2026-01-03"))
    assert job["status"] == "done"
    assert job["plugins"]["exporter"]["rows"] == 3  # L2, L3 and the hostile row
    assert job["row_count"] == 3


def test_csv_escapes_formulas_and_flattens_nested_values(host: Host, runtime: PluginRuntime) -> None:
    host.registry.grant("exporter", "lead_access")
    service = host.exports
    export_id = service.create("leads")
    service.run(export_id)
    rows = list(csv.reader(io.StringIO(service.render(export_id, "csv"))))
    assert rows[0] == ["plugin_id", "lead", "email_domain", "note"]
    assert rows[1] == ["exporter", "L1", "acme.io", ""]
    assert rows[-1] == ["exporter", '\'=HYPERLINK("http://evil")', "", '{"nested": [1, 2]}']
    as_json = json.loads(service.render(export_id, "json"))
    assert as_json[0] == {"plugin_id": "exporter", "lead": "L1", "email_domain": "acme.io"}


def test_non_leads_export_needs_only_data_export(host: Host, runtime: PluginRuntime) -> None:
    service = host.exports
    job = service.run(service.create("summary"))
    assert job["plugins"]["exporter"]["rows"] == 1  # no records given: only the extra row


def test_bad_rows_are_a_plugin_error(host: Host, tmp_path: Path) -> None:
    folder = write_plugin(
        tmp_path / "bad",
        manifest_for("Bad Export", hooks=["data_export"], permissions=["data_export"]),
        "from services_ai_plugins import hookimpl\n\n@hookimpl\ndef data_export():\n    return [1, 2]\n",
    )
    host.registry.install(folder)
    host.registry.grant("bad-export", "data_export")
    host.registry.enable("bad-export")
    rt = host.runtime
    service = host.exports
    job = service.run(service.create("summary"))
    rt.close()
    assert job["status"] == "failed"
    assert job["plugins"]["bad-export"]["error"] == "data_export row 0 is int, not an object"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Leads!",), "is not a name"),
        (("leads", "2026-13-01"), "since: '2026-13-01' is not a date"),
        (("leads", "2026-02-01", "2026-01-01"), "until: is before since"),
    ],
)
def test_bad_export_requests(host: Host, args: tuple[str, ...], message: str) -> None:
    with pytest.raises(InputError, match=message):
        host.exports.create(*args)


def test_sample_plugin_export(host: Host) -> None:
    host.registry.install(SAMPLE_PLUGIN)
    for p in ("data_export", "lead_access"):
        host.registry.grant("lead-insights", p)
    host.registry.enable("lead-insights")
    rt = host.runtime
    host.processor.process([Incoming({"type": "lead.created", "data": {"id": "L9", "company": "Acme"}})])
    service = host.exports
    job = service.run(service.create("leads"))
    rt.close()
    assert [row for _, row in service.rows(job["id"])] == [{"lead_id": "L9", "score": 20, "tier": "cold"}]


def test_csv_cell() -> None:
    assert csv_cell("-1+1") == "'-1+1"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell(True) == "true"
    assert csv_cell(None) == ""
    assert csv_cell(3.5) == "3.5"
