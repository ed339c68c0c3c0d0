// The app's only script (served from /static: the Content Security Policy allows no other).
// On the dashboard, each widget polls its own snapshot every refresh_interval seconds with
// If-None-Match, so an unchanged widget costs a 304 and no body; a changed one reloads its
// sandboxed frame. Admins can ask for a render now; the widget then polls a few times sooner.
"use strict";

(function () {
  const csrf = document.body.dataset.csrf || "";

  function text(el, selector, value) {
    const node = el.querySelector(selector);
    if (node) node.textContent = value;
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").slice(0, 19) : "-";
  }

  async function poll(card) {
    const id = card.dataset.widget;
    const headers = { Accept: "application/json" };
    if (card.dataset.tag) headers["If-None-Match"] = card.dataset.tag;
    let response;
    try {
      response = await fetch(`/api/v1/widgets/${encodeURIComponent(id)}`, { headers, credentials: "same-origin" });
    } catch (err) {
      return; // the server is away for a moment: the next tick tries again
    }
    if (response.status === 401) {
      window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
      return;
    }
    if (response.status !== 200) return;
    card.dataset.tag = response.headers.get("ETag") || "";
    const w = await response.json();
    text(card, ".widget-title", w.title);
    const badge = card.querySelector(".widget-status");
    if (badge) {
      badge.textContent = w.status;
      badge.className = `badge widget-status ${w.ok ? "text-bg-success" : "text-bg-warning"}`;
    }
    text(card, ".widget-rendered", `rendered ${when(w.rendered_at)}`);
    text(card, ".widget-stale", w.stale_since ? ` · stale since ${when(w.stale_since)}: ${w.error || ""}` : "");
    const frame = card.querySelector("iframe.widget-frame");
    const src = `/dashboard/widgets/${encodeURIComponent(id)}/frame?v=${encodeURIComponent(w.etag)}`;
    if (frame && frame.getAttribute("src") !== src) frame.setAttribute("src", src);
    card.dataset.refresh = String(w.refresh_interval);
  }

  function schedule(card) {
    const seconds = Math.max(5, parseInt(card.dataset.refresh, 10) || 60);
    window.setTimeout(async () => {
      await poll(card);
      schedule(card);
    }, seconds * 1000);
  }

  async function renderNow(card) {
    const id = card.dataset.widget;
    const response = await fetch(`/api/v1/widgets/${encodeURIComponent(id)}/refresh`, {
      method: "POST",
      headers: { "X-CSRFToken": csrf },
      credentials: "same-origin",
    });
    if (response.status !== 202) return;
    for (const delay of [500, 1000, 2000, 4000, 8000]) {
      window.setTimeout(() => poll(card), delay);
    }
  }

  const cards = document.querySelectorAll("[data-widget]");
  cards.forEach((card) => {
    poll(card).then(() => schedule(card));
    const button = card.querySelector(".widget-refresh");
    if (button) button.addEventListener("click", () => renderNow(card));
  });
})();
