// The Tracking plan page, like Segment Protocols: volume per event per day, blocked and flagged
// messages, violations by kind, the sources that send the most bad data, and the plan itself as
// TRACKING_PLAN.md defines it, each event with its volume and violations.
"use strict";
let days = 14, spec = null;

function constraints(p) {
  return [p.required ? "required" : null, p.values.length ? "one of " + p.values.join(", ") : null,
    p.min !== null ? "min " + p.min : null, p.max !== null ? "max " + p.max : null, p.pattern ? "pattern " + p.pattern : null]
    .filter(Boolean).join(" · ");
}

/** A tiny inline bar sparkline of a series, drawn with SVG (no data as HTML). */
function spark(values) {
  const NS = "http://www.w3.org/2000/svg", w = 84, h = 20, max = Math.max(1, ...values);
  const s = document.createElementNS(NS, "svg");
  s.setAttribute("width", w); s.setAttribute("height", h); s.setAttribute("class", "spark");
  s.setAttribute("role", "img"); s.setAttribute("aria-label", "per day: " + values.join(", "));
  const bw = w / values.length;
  values.forEach((v, i) => {
    const r = document.createElementNS(NS, "rect");
    const bh = v ? Math.max(1, (h - 2) * v / max) : 0;
    r.setAttribute("x", (i * bw + 0.5).toFixed(1)); r.setAttribute("width", Math.max(1, bw - 1).toFixed(1));
    r.setAttribute("y", (h - bh).toFixed(1)); r.setAttribute("height", bh.toFixed(1));
    s.append(r);
  });
  return s;
}

async function load() {
  const h = await api("/admin/plan/health?days=" + days);
  $("version").textContent = h.planVersion;
  const t = h.totals;
  const card = (v, l, cls) => el("div", { class: "card " + (cls || "") }, el("div", { class: "v", text: fmt.num(v || 0) }), el("div", { class: "l", text: l }));
  $("totals").replaceChildren(card(t.messages, "messages"), card(t.accepted, "accepted"), card(t.flagged, "flagged", t.flagged ? "warn" : ""),
    card(t.blocked, "blocked", t.blocked ? "bad" : ""), card(t.rejected, "rejected (not messages)", t.rejected ? "bad" : ""),
    el("div", { class: "card" }, el("div", { class: "v", text: fmt.pct((t.blocked || 0) + (t.flagged || 0), t.messages) }), el("div", { class: "l", text: "with violations" })));
  // Volume: the six busiest events, the rest summed as "other".
  const top = h.events.slice(0, 6);
  const rest = h.events.slice(6);
  const series = top.map((e) => ({ label: e.event, values: e.perDay }));
  if (rest.length) series.push({ label: "other (" + rest.length + ")", values: h.days.map((_, i) => rest.reduce((a, e) => a + e.perDay[i], 0)) });
  timeChart($("volume-chart"), h.days, series, { bars: true, stacked: true, height: 210,
    summary: "Messages per day for the busiest events over " + days + " days" });
  timeChart($("blocked-chart"), h.days, [{ label: "blocked", values: h.blockedPerDay, color: "#c2364a" },
    { label: "flagged", values: h.flaggedPerDay, color: "#e0a100" }], { bars: true, stacked: true, height: 210,
    summary: "Blocked and flagged messages per day" });
  $("kinds").replaceChildren(...(h.violationsByKind.length ? h.violationsByKind.map((k) => el("tr", { title: k.example || "" },
    el("td", {}, el("code", { text: k.kind }), k.example ? el("div", { class: "muted small", text: k.example }) : null),
    el("td", { class: "n", text: fmt.num(k.messages) }), el("td", { class: "n", text: fmt.num(k.blocked) }),
    el("td", { class: "small", text: k.fields.map((f) => f.name + " (" + f.count + ")").join(", ") }),
    el("td", { class: "small", text: k.events.map((f) => f.name + " (" + f.count + ")").join(", ") }))) :
    [el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No violations in this period." }))]));
  $("sources").replaceChildren(...(h.sources.length ? h.sources.map((s) => el("tr", {},
    el("td", { text: s.source }), el("td", { class: "n", text: fmt.num(s.messages) }), el("td", { class: "n", text: fmt.num(s.blocked) }),
    el("td", { class: "n", text: fmt.num(s.rejected) }), el("td", { class: "small", text: s.kinds.map((k) => k.name).join(", ") }))) :
    [el("tr", {}, el("td", { colspan: 5, class: "empty", text: "Every source sent clean data." }))]));
  $("rejected").replaceChildren(...(h.rejected.length ? h.rejected.map((r) => el("tr", {},
    el("td", { text: r.source }), el("td", { class: "small", text: r.reason }), el("td", { class: "n", text: fmt.num(r.count) }))) :
    [el("tr", {}, el("td", { class: "empty", text: "none" }))]));
  renderSpec(h);
}

function renderSpec(h) {
  const s = spec.settings;
  $("settings").textContent = "naming " + s.naming + " · unplanned events " + s.unplannedEvents + " · unplanned properties " +
    s.unplannedProperties + " · invalid events " + s.invalidEvents;
  $("stages").replaceChildren(...spec.stages.map((st) => el("div", { class: "stage" }, el("b", { text: st.name }), el("span", { class: "small muted", text: st.description }))));
  const seen = new Map(h.events.map((e) => [e.event, e]));
  $("events").replaceChildren(...spec.events.map((e) => {
    const v = seen.get(e.name);
    const props = el("table", { class: "props small" }, el("thead", {}, el("tr", {}, el("th", { text: "property" }), el("th", { text: "type" }), el("th", { text: "constraints" }), el("th", { text: "description" }))),
      el("tbody", {}, e.properties.map((p) => el("tr", {}, el("td", {}, el("code", { text: p.name })), el("td", { text: p.type }), el("td", { text: constraints(p) }), el("td", { text: p.description })))));
    return el("tr", { "data-event": e.name },
      el("td", {}, el("details", {}, el("summary", {}, el("code", { text: e.name })), e.properties.length ? props : el("p", { class: "empty", text: "no properties" }))),
      el("td", { text: e.stage || "—" }), el("td", { class: "small", text: e.description }),
      el("td", { class: "n", text: fmt.num(v ? v.total : 0) }),
      el("td", { class: "n" + (v && v.blocked ? " bad-text" : ""), text: fmt.num(v ? v.blocked : 0) }),
      el("td", { class: "n" + (v && v.violations ? " bad-text" : ""), text: fmt.num(v ? v.violations : 0) }),
      el("td", {}, spark(v ? v.perDay : h.days.map(() => 0))));
  }));
  $("traits").replaceChildren(...spec.traits.map((p) => el("tr", {}, el("td", {}, el("code", { text: p.name })), el("td", { text: p.type }),
    el("td", { class: "small", text: constraints(p) }), el("td", { class: "small", text: p.description }))));
  const unplanned = h.events.filter((e) => !e.planned && e.type === "track");
  $("unplanned").replaceChildren(...(unplanned.length ? unplanned.map((e) => el("tr", {}, el("td", {}, el("code", { text: e.event })),
    el("td", { class: "n", text: fmt.num(e.total) }), el("td", { class: "small muted", text: e.blocked ? fmt.num(e.blocked) + " blocked" : "" }))) :
    [el("tr", {}, el("td", { class: "empty", text: "none" }))]));
  $("identity").textContent = "Identity: priority " + spec.identity.priority.join(" > ") + "; limits " +
    spec.identity.limits.map((l) => l.kind + " " + l.limit).join(", ") + ".";
}

$("days").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-days]");
  if (!b) return;
  days = Number(b.dataset.days);
  $("days").querySelectorAll("button").forEach((x) => x.setAttribute("aria-pressed", String(x === b)));
  load().catch(showError);
});

whenReady(async () => {
  try {
    spec = await api("/admin/plan/spec");
    await load();
    document.body.dataset.loaded = "1";
  } catch (e) { showError(e); }
});
