"""Lead Insights hooks. Every hook of the host is implemented here, on one class."""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path
from string import Template

from services_ai_plugins import hookimpl

from .scoring import score_lead, tier

TEMPLATES = Path(__file__).parent / "templates"


def _parse(ts):
    return datetime.fromisoformat(ts) if isinstance(ts, str) else ts


class LeadInsights:
    """The class named by ``plugin_class``; the host makes one instance per worker process."""

    # -- lifecycle --------------------------------------------------------------------------

    @hookimpl
    def plugin_installed(self, plugin_id, plugin_info, context):
        context["logger"].info("installed %s %s", plugin_id, plugin_info["version"])
        return {"status": "success", "message": f"{plugin_info['name']} installed"}

    @hookimpl
    def plugin_uninstalled(self, plugin_id, context):
        context["logger"].info("uninstalled %s", plugin_id)
        return {"status": "success"}

    @hookimpl
    def plugin_enabled(self, plugin_id, context):
        return {"status": "success", "message": f"{plugin_id} enabled"}

    @hookimpl
    def plugin_disabled(self, plugin_id, context):
        return {"status": "success", "message": f"{plugin_id} disabled"}

    # -- events -----------------------------------------------------------------------------

    @hookimpl
    def lead_created(self, lead, context):
        settings = context["settings"]
        score = score_lead(lead, settings["scoring_model"])
        level = tier(score, settings["min_score"])
        result = {
            "status": "success",
            "message": f"Lead {lead['id']} scored {score} ({level})",
            "score": score,
            "tier": level,
            "follow_up": bool(settings["notify_sales"] and level == "hot"),
            "crm_sync": bool(settings["api_key"]) and level == "hot",
        }
        context["logger"].info("lead %s scored %s", lead["id"], score)
        return result

    @hookimpl
    def booking_created(self, booking, context):
        starts = _parse(booking["starts_at"])
        ends = _parse(booking.get("ends_at"))
        minutes = int((ends - starts).total_seconds() // 60) if ends else None
        service = booking.get("service") or "a service"
        return {
            "status": "success",
            "message": f"Booking {booking['id']} for {service} on {starts:%Y-%m-%d %H:%M}",
            "duration_minutes": minutes,
        }

    @hookimpl
    def booking_updated(self, booking, previous_state, context):
        watched = ("status", "starts_at", "ends_at", "service", "location", "price")
        changes = [
            f"{key}: {previous_state.get(key)} -> {booking.get(key)}"
            for key in watched
            if previous_state.get(key) != booking.get(key)
        ]
        return {
            "status": "success",
            "message": f"Booking {booking['id']}: " + ("; ".join(changes) or "no change"),
            "changes": changes,
            "cancelled": booking.get("status") == "cancelled" and previous_state.get("status") != "cancelled",
        }

    # -- UI ---------------------------------------------------------------------------------

    @hookimpl
    def dashboard_widget(self, plugin_id, context):
        settings = context["settings"]
        scores = [
            r["result"]["score"]
            for r in context.get("recent_results", [])
            if r.get("hook") == "lead_created"
            and isinstance(r.get("result"), dict)
            and isinstance(r["result"].get("score"), int)
        ]
        hot = sum(1 for s in scores if s >= settings["min_score"])
        average = round(sum(scores) / len(scores)) if scores else "-"
        page = Template((TEMPLATES / "widget.html").read_text(encoding="utf-8"))
        body = page.substitute(
            greeting=html.escape(settings["greeting"]),
            scored=len(scores),
            hot=hot,
            average=average,
            footer=html.escape(settings["notes_footer"]).replace("\n", "<br>"),
        )
        return {"title": "Lead Insights", "html": body, "refresh_interval": 60}

    @hookimpl
    def settings_page(self, plugin_id, context):
        settings = context["settings"]
        key_state = "configured" if settings["api_key"] else "not configured"
        return (
            "<div class='alert alert-info'>"
            f"<p>Leads scoring at least <strong>{settings['min_score']}</strong> are hot "
            f"(model: {html.escape(str(settings['scoring_model']))}).</p>"
            f"<p class='mb-0'>CRM sync: {key_state}.</p></div>"
        )

    # -- exports ----------------------------------------------------------------------------

    @hookimpl
    def data_export(self, export_type, start_date, end_date, filters, context):
        if export_type != "leads":
            return []
        settings = context["settings"]
        rows = []
        for lead in context.get("records", []):
            score = score_lead(lead, settings["scoring_model"])
            rows.append({"lead_id": lead["id"], "score": score, "tier": tier(score, settings["min_score"])})
        minimum = (filters or {}).get("min_score")
        if isinstance(minimum, int | float):
            rows = [r for r in rows if r["score"] >= minimum]
        return rows
