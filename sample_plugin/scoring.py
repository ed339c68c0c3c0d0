"""Lead scoring, kept apart from the hooks (and imported relatively, as plugins should)."""

from __future__ import annotations

FREE_MAIL = {"gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "aol.com"}
SOURCE_POINTS = {"referral": 25, "website": 15, "ads": 10, "event": 20}


def score_lead(lead: dict, model: str = "basic") -> int:
    """0-100: how promising a lead looks from what the platform sent."""
    score = 10
    email = (lead.get("email") or "").lower()
    domain = email.rpartition("@")[2]
    if email:
        score += 15
        if domain and domain not in FREE_MAIL:
            score += 15
    if lead.get("phone"):
        score += 10
    if lead.get("company"):
        score += 25 if model == "b2b" else 10
    score += SOURCE_POINTS.get((lead.get("source") or "").lower(), 0)
    if lead.get("notes"):
        score += 5
    return max(0, min(100, score))


def tier(score: int, threshold: float) -> str:
    if score >= threshold:
        return "hot"
    if score >= threshold / 2:
        return "warm"
    return "cold"
