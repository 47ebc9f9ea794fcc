// The handoff log: every handoff with its rule, priority, score, team, rep, how the rep was chosen,
// its state and where it went (CRM owner, Task, email, reminder), and the reps' open handoffs.
"use strict";

async function load() {
  const state = $("state").value;
  const h = await api("/admin/handoffs?limit=500" + (state ? "&state=" + encodeURIComponent(state) : ""));
  $("off").hidden = h.enabled;
  const open = {};
  for (const r of h.handoffs) if (["pending", "open", "reminded"].includes(r.state)) open[r.rep] = (open[r.rep] || 0) + 1;
  $("log").replaceChildren(...h.handoffs.map((r) => {
    const p = r.progress || {}, where = [];
    if (p.salesforce && p.salesforce.task) where.push("Salesforce " + p.salesforce.object + " + Task");
    if (p.hubspot && p.hubspot.task) where.push("HubSpot contact + task");
    if (p.email) where.push("email");
    if (p.reminder) where.push("reminder");
    return el("tr", {},
      el("td", { class: "n", text: r.id }), el("td", { class: "small", text: fmt.time(r.createdAt) }),
      el("td", {}, el("a", { href: "/profiles?id=" + encodeURIComponent(r.profileId), text: (r.brief && r.brief.who) || r.profileId })),
      el("td", {}, el("code", { text: r.rule })), el("td", { text: r.priority }), el("td", { class: "n", text: r.score }),
      el("td", { text: r.team }), el("td", { text: r.rep }), el("td", { class: "small", text: r.how }),
      el("td", {}, el("span", { class: "badge " + ({ open: "warn", reminded: "warn", completed: "ok", failed: "bad" }[r.state] || ""), text: r.state })),
      el("td", { class: "small", text: where.join(", ") || "—" }), el("td", { class: "small dead", text: r.error || "" }));
  }));
  $("reps").replaceChildren(...(h.reps || []).map((r) => el("tr", {},
    el("td", {}, el("b", { text: r.id })), el("td", { text: r.team }), el("td", { class: "n", text: open[r.id] || 0 }),
    el("td", { class: "n", text: r.capacity }), el("td", { text: [r.salesforce && "Salesforce", r.hubspot && "HubSpot"].filter(Boolean).join(", ") }))));
}

$("state").addEventListener("change", () => load().catch(showError));
$("tick").addEventListener("click", async () => {
  try { await api("/admin/handoffs/tick", { method: "POST" }); await load(); } catch (e) { showError(e); }
});
whenReady(() => load().catch(showError));
