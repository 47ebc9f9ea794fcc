// The Deliveries page: per-destination outbox counts, and for the selected destination its
// successful and failed calls over 24 hours, every call of the delivery log, dead letters and replay.
"use strict";
let current = null;

async function load() {
  const { destinations } = await api("/admin/destinations");
  $("dests").replaceChildren(...destinations.map((d) => {
    const o = d.outbox, m = d.metrics || {};
    const tr = el("tr", { class: "pick", "data-name": d.name, tabindex: 0, "aria-label": d.name + (d.enabled ? "" : " (disabled)") },
      el("td", {}, el("b", { text: d.name })), el("td", {}, el("span", { class: "badge " + (d.enabled ? "ok" : ""), text: d.enabled ? "enabled" : "off" })),
      el("td", { class: "n", text: o.pending }), el("td", { class: "n", text: o.delivering }), el("td", { class: "n", text: o.delivered }),
      el("td", { class: "n" + (o.dead ? " dead" : ""), text: o.dead }), el("td", { class: "n", text: m.retried ?? "" }),
      el("td", { text: (d.consentCategories || []).join(", ") || "none" }), el("td", { class: "n", text: m.consentSkipped ?? "" }));
    tr.addEventListener("click", () => showLog(d.name).catch(showError));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); showLog(d.name).catch(showError); } });
    return tr;
  }));
  const first = destinations.find((d) => d.enabled);
  if (current || first) await showLog(current || first.name);
}

async function showLog(name) {
  current = name;
  document.querySelectorAll("#dests tr").forEach((r) => r.classList.toggle("selected", r.dataset.name === name));
  const [l, h] = await Promise.all([api("/admin/destinations/" + encodeURIComponent(name) + "/log?limit=100"),
    api("/admin/pipeline/health?minutes=1440")]);
  $("which").textContent = name;
  $("replay").hidden = l.dead.length === 0;
  const d = h.deliveries.find((x) => x.destination === name);
  timeChart($("outcomes"), h.times, d ? [{ label: "success", values: d.success, color: "#11936f" }, { label: "failed", values: d.errors, color: "#c2364a" }] : [],
    { bars: true, stacked: true, height: 120, summary: name + ": calls per hour over 24 hours" });
  $("log").replaceChildren(...l.log.map((e) => el("tr", {},
    el("td", { class: "small", text: fmt.time(e.at) }), el("td", {}, el("span", { class: "badge " + ({ success: "ok", dead: "bad" }[e.outcome] || "warn"), text: e.outcome })),
    el("td", { text: e.statusCode ?? e.status_code ?? "—" }), el("td", { class: "n", text: e.durationMs ?? e.duration_ms }),
    el("td", {}, el("code", { text: e.request })), el("td", { class: "n", text: (e.outboxIds ?? e.outbox_ids ?? []).length }),
    el("td", { class: "small", text: e.error ?? "" }))));
  $("dead").replaceChildren(...l.dead.map((r) => el("tr", {},
    el("td", { text: r.idempotencyKey ?? r.idempotency_key }), el("td", { class: "n", text: r.attempts }),
    el("td", { class: "small dead", text: r.lastError ?? r.last_error ?? "" }))));
}

$("replay").addEventListener("click", async () => {
  try { await api("/admin/destinations/" + encodeURIComponent(current) + "/replay", { method: "POST" }); await load(); }
  catch (e) { showError(e); }
});
whenReady(() => load().catch(showError));
