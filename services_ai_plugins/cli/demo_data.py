"""Made-up but realistic leads, bookings and booking updates for the demo (and the benchmarks)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["demo_events"]

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia", "Donald"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Torvalds"]
COMPANIES = [None, "Acme Plumbing", "Northwind Dental", "Brightside Cleaning", "Summit HVAC", None]
DOMAINS = ["gmail.com", "acmeplumbing.com", "northwind.dental", "outlook.com", "summit-hvac.io"]
SOURCES = ["website", "referral", "ads", "event", "walk-in"]
SERVICES = ["Consultation", "Boiler service", "Deep clean", "Check-up", "Installation"]


def demo_events(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Realistic leads, bookings and booking updates (about 60/25/15)."""
    now = datetime.now(UTC).replace(microsecond=0)
    out: list[dict[str, Any]] = []
    bookings: list[dict[str, Any]] = []
    for i in range(count):
        roll = i % 20
        if roll < 12 or (not bookings and roll >= 17):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            company = rng.choice(COMPANIES)
            domain = rng.choice(DOMAINS)
            lead = {
                "id": f"L-{1000 + i}",
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}@{domain}",
                "phone": f"+1 555 01{rng.randint(10, 99)}" if rng.random() < 0.7 else None,
                "company": company,
                "source": rng.choice(SOURCES),
                "status": "new",
                "created_at": (now - timedelta(minutes=count - i)).isoformat(),
                "custom_fields": {"utm_campaign": rng.choice(["spring", "retarget", "brand"])},
            }
            out.append({"type": "lead.created", "source": "demo", "data": lead})
        elif roll < 17:
            day = now + timedelta(days=rng.randint(1, 14))
            starts = day.replace(hour=rng.randint(8, 16), minute=rng.choice([0, 30]), second=0)
            booking = {
                "id": f"B-{2000 + i}",
                "lead_id": f"L-{1000 + rng.randint(0, max(i - 1, 0))}",
                "service": rng.choice(SERVICES),
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(minutes=rng.choice([30, 60, 90]))).isoformat(),
                "status": "pending",
                "location": rng.choice(["On site", "Clinic", "Video call"]),
                "price": float(rng.choice([49, 99, 149, 249])),
            }
            bookings.append(booking)
            out.append({"type": "booking.created", "source": "demo", "data": booking})
        else:
            before = bookings[rng.randrange(len(bookings))]
            after = {**before, "status": rng.choice(["confirmed", "cancelled", "completed"])}
            if after["status"] == "confirmed" and rng.random() < 0.5:
                moved = datetime.fromisoformat(before["starts_at"]) + timedelta(days=1)
                after["starts_at"] = moved.isoformat()
                after["ends_at"] = (moved + timedelta(minutes=60)).isoformat()
            out.append(
                {"type": "booking.updated", "source": "demo", "data": {**after, "previous_state": before}}
            )
    return out
