// The Profiles page: a person's summary, the identity graph (identifiers as nodes, the messages that
// linked them, merges) drawn as SVG, traits and accounts, computed traits with the journey-stage
// breakdown, audiences, and a readable timeline with filters.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const KINDS = ["user_id", "email", "phone", "anonymous_id"];
let current = null, next = null, items = [], planSpec = null;

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
const short = (s, n) => s.length > n ? s.slice(0, n - 1) + "…" : s;
const valueText = (v) => typeof v === "string" ? v : JSON.stringify(v);

function rows(table, pairs) {
  table.replaceChildren(...(pairs.length ? pairs.map(([k, v, note]) => el("tr", {}, el("th", { text: k }),
    el("td", {}, valueText(v), note ? el("div", { class: "muted small", text: note }) : null))) :
    [el("tr", {}, el("td", { class: "empty", text: "none" }))]));
}

async function search(e) {
  if (e) e.preventDefault();
  showError(null);
  try {
    const q = new URLSearchParams({ kind: $("kind").value, value: $("value").value.trim() });
    history.replaceState(null, "", "#" + q);
    show(await api("/admin/profiles?" + q));
  } catch (err) { showError(err); $("profile").hidden = true; }
}

async function open(id) {
  try { show(await api("/admin/profiles/" + encodeURIComponent(id))); } catch (err) { showError(err); }
}

function show(p) {
  current = p.id;
  $("profile").hidden = false;
  $("pid").textContent = p.id;
  const t = p.traits;
  const email = t.email || (p.identities.find((i) => i.kind === "email") || {}).value;
  const user = (p.identities.find((i) => i.kind === "user_id") || {}).value;
  $("who").textContent = [t.name, email].filter(Boolean).join(" · ") || user || p.id;
  const c = p.computed;
  $("stage").textContent = c.journey_stage || "—";
  const card = (v, l) => el("div", { class: "card" }, el("div", { class: "v", text: v }), el("div", { class: "l", text: l }));
  $("cards").replaceChildren(card(fmt.num(c.messages_total), "messages"), card(fmt.num(c.active_days_30d), "active days (30 d)"),
    card(fmt.num(c.page_views.last_30d), "page views (30 d)"), card(fmt.ago(c.last_seen), "last seen"),
    card(fmt.day(c.first_seen || p.createdAt), "first seen"), card(fmt.num(p.identities.length), "identifiers"),
    card(fmt.num(p.audiences.filter((a) => !a.exited_at).length), "audiences now"),
    ...(t.lead_score !== undefined ? [card(fmt.num(t.lead_score), "lead score")] : []));
  rows($("traits"), Object.entries(p.traits).map(([k, v]) => [k, v, p.traitTimes && p.traitTimes[k] ? "set " + fmt.time(p.traitTimes[k]) : null]));
  $("accounts").replaceChildren(...(p.accounts.length ? p.accounts.map((a) => {
    const tbl = el("table", { class: "small" });
    rows(tbl, Object.entries(a.traits));
    return el("div", { class: "account" }, el("h3", { text: "account " + a.groupId }), tbl);
  }) : [el("p", { class: "empty", text: "no account" })]));
  rows($("computed"), [["first seen", fmt.time(c.first_seen)], ["last seen", fmt.time(c.last_seen)],
    ["messages", fmt.num(c.messages_total)], ["page views (7 d / 30 d / all)", [c.page_views.last_7d, c.page_views.last_30d, c.page_views.total].join(" / ")],
    ["active days (30 d)", c.active_days_30d],
    ...Object.entries(c.events).map(([e, n]) => [e + " (7 d / 30 d / all)", [n.last_7d, n.last_30d, n.total].join(" / ")]),
    ...(p.aggregates || []).map((a) => [a.event + "." + a.property, "n " + a.count + " · sum " + a.sum + " · min " + a.min + " · max " + a.max]),
    // The lead score (LEAD_HANDOFF.md) with the points of each factor.
    ...(t.lead_score !== undefined ? [["lead score", t.lead_score]] : []),
    ...Object.entries(t.lead_score_breakdown || {}).map(([f, n]) => ["lead score · " + f, (n > 0 ? "+" : "") + n])]);
  stages(c);
  rows($("audiences"), p.audiences.map((a) => [a.audience, a.exited_at ? "left " + fmt.time(a.exited_at) : "member since " + fmt.time(a.entered_at)]));
  rows($("merges"), p.merges.map((m) => [fmt.time(m.at), m.loser + " → " + m.winner, m.reason]));
  rows($("reports"), (p.reports || []).map((r) => [r.kind, r.id_kind + " " + r.id_value, r.detail]));
  graph().catch(showError);
  items = []; next = null;
  $("timeline").replaceChildren();
  loadTimeline().catch(showError);
}

/** The journey stage breakdown: every stage of the plan with the profile's events that count for it. */
function stages(c) {
  if (!planSpec) return;
  const reached = planSpec.stages.findIndex((s) => s.name === c.journey_stage);
  const counts = Object.assign({ page_viewed: c.page_views }, c.events);
  $("stages").replaceChildren(...planSpec.stages.map((s, i) => {
    const evs = planSpec.events.filter((e) => e.stage === s.name).map((e) => [e.name, (counts[e.name] || {}).total || 0]);
    const done = evs.filter(([, n]) => n > 0);
    return el("li", { class: i <= reached ? "reached" + (i === reached ? " current" : "") : "" },
      el("div", {}, el("b", { text: s.name }), " ", el("span", { class: "muted small", text: done.length + " of " + evs.length + " stage events" })),
      el("div", { class: "small" }, evs.map(([n, k]) => el("span", { class: "chip" + (k ? " on" : ""), text: n + (k ? " ×" + k : "") }))));
  }));
}

/** Draws the identity graph: rows of identifiers by kind, the linking messages along the bottom. */
async function graph() {
  const g = await api("/admin/profiles/" + encodeURIComponent(current) + "/graph");
  const box = $("graph");
  const msgs = g.messages;
  const col = new Map(msgs.map((m, i) => [m.seq, i]));
  const kinds = [...new Set([...KINDS.filter((k) => g.identifiers.some((i) => i.kind === k)), ...g.identifiers.map((i) => i.kind)])];
  const COL = 150, LEFT = 110, TOP = 16, NODE_W = 136;
  const cols = Math.max(1, msgs.length);
  const pos = new Map();
  const rowTop = [];
  let y = TOP;
  for (const k of kinds) {
    rowTop.push(y);
    const used = new Map();
    let depth = 1;
    for (const i of g.identifiers.filter((i) => i.kind === k)) {
      const c = col.has(i.seq) ? col.get(i.seq) : 0;
      const n = used.get(c) || 0; // identifiers attached by the same message stack up
      used.set(c, n + 1);
      depth = Math.max(depth, n + 1);
      pos.set(i.id, { x: LEFT + c * COL, y: y + n * 30 });
    }
    y += depth * 30 + 22;
  }
  const msgY = y + 24;
  const width = LEFT + cols * COL + 20, height = msgY + 58;
  const root = svg("svg", { viewBox: "0 0 " + width + " " + height, width, height, role: "img",
    "aria-label": "Identity graph: " + g.identifiers.length + " identifiers linked by " + msgs.length + " messages" + (g.merges.length ? ", " + g.merges.length + " merges" : "") });
  kinds.forEach((k, r) => root.append(svg("text", { x: 8, y: rowTop[r] + 18, class: "row-label" }, k)));
  root.append(svg("text", { x: 8, y: msgY + 22, class: "row-label" }, "messages"));
  // Edges first, under the nodes.
  msgs.forEach((m, i) => {
    const mx = LEFT + i * COL + NODE_W / 2;
    for (const id of m.carried) {
      const p = pos.get(id);
      if (!p) continue;
      const attached = m.attached.includes(id);
      root.append(svg("path", { d: `M${mx},${msgY} C${mx},${msgY - 30} ${p.x + NODE_W / 2},${p.y + 50} ${p.x + NODE_W / 2},${p.y + 24}`,
        class: "edge" + (attached ? " attached" : "") + (m.merges.length ? " merge" : "") }));
    }
  });
  for (const i of g.identifiers) {
    const p = pos.get(i.id);
    root.append(svg("g", { class: "node kind-" + (KINDS.includes(i.kind) ? i.kind : "other"), transform: `translate(${p.x},${p.y})` },
      svg("title", {}, i.kind + " " + i.value + " — attached " + fmt.time(i.added_at) + " by message #" + i.seq),
      svg("rect", { width: NODE_W, height: 24, rx: 12 }),
      svg("text", { x: 10, y: 16 }, short(i.value, 19))));
  }
  msgs.forEach((m, i) => {
    const what = m.type === "track" ? m.event : m.type;
    root.append(svg("g", { class: "msg" + (m.merges.length ? " merge" : ""), transform: `translate(${LEFT + i * COL},${msgY})` },
      svg("title", {}, "#" + m.seq + " " + m.type + (m.event ? " " + m.event : "") + " at " + fmt.time(m.time) +
        (m.merges.length ? "\n" + m.merges.map((x) => "merged " + x.loser + " into " + x.winner + ": " + x.reason).join("\n") : "")),
      svg("rect", { width: NODE_W, height: 40, rx: 4 }),
      svg("text", { x: 8, y: 16, class: "what" }, short((m.merges.length ? "⇄ " : "") + what, 20)),
      svg("text", { x: 8, y: 32, class: "when" }, fmt.time(m.time).slice(5, 16))));
  });
  box.replaceChildren(root);
  const byId = new Map(g.identifiers.map((i) => [i.id, i]));
  $("identities").replaceChildren(...g.identifiers.map((i) => {
    const m = msgs.find((x) => x.seq === i.seq);
    const withIds = m ? m.carried.filter((x) => x !== i.id).map((x) => byId.get(x)).filter(Boolean).map((x) => x.kind + " " + x.value).join(", ") : "";
    return el("tr", {}, el("td", {}, el("b", { text: i.kind }), " ", i.value), el("td", { class: "small", text: fmt.time(i.added_at) }),
      el("td", { class: "small", text: m ? "#" + m.seq + " " + m.type + (m.event ? " " + m.event : "") : "#" + i.seq }),
      el("td", { class: "small", text: withIds || "—" }));
  }));
}

/** A message as one readable line: what happened and its most telling fields. */
function sentence(m) {
  const kv = (o) => Object.entries(o || {}).filter(([, v]) => v !== null && v !== undefined && v !== "" && typeof v !== "object").slice(0, 6).map(([k, v]) => k + ": " + v).join(" · ");
  switch (m.type) {
    case "track": return ["Tracked " + m.event, kv(m.properties)];
    case "page": return ["Viewed page " + (m.name || (m.properties || {}).path || (m.properties || {}).url || ""), kv({ title: (m.properties || {}).title, referrer: (m.properties || {}).referrer })];
    case "screen": return ["Viewed screen " + (m.name || ""), kv(m.properties)];
    case "identify": return ["Identified" + (m.userId ? " as " + m.userId : ""), kv(m.traits)];
    case "group": return ["Joined account " + m.groupId, kv(m.traits)];
    case "alias": return ["Alias " + m.previousId + " → " + m.userId, ""];
    default: return [m.type, ""];
  }
}

async function loadTimeline() {
  const q = new URLSearchParams({ limit: "50" });
  if (next) q.set("before", next);
  const page = await api("/admin/profiles/" + encodeURIComponent(current) + "/timeline?" + q);
  items.push(...page.items);
  next = page.next;
  $("more").hidden = !next;
  const events = [...new Set(items.map((i) => i.message.type === "track" ? i.message.event : null).filter(Boolean))].sort();
  const chosen = $("f-event").value;
  $("f-event").replaceChildren(el("option", { value: "", text: "all" }), ...events.map((e) => el("option", { value: e, text: e, selected: e === chosen })));
  drawTimeline();
}

function drawTimeline() {
  const type = $("f-type").value, event = $("f-event").value, text = $("f-text").value.trim().toLowerCase();
  const shown = items.filter((i) => (!type || i.message.type === type) && (!event || i.message.event === event) &&
    (!text || JSON.stringify(i.message).toLowerCase().includes(text)));
  $("timeline").replaceChildren(...shown.map((i) => {
    const m = i.message;
    const [what, detail] = sentence(m);
    return el("li", { class: "t-" + m.type },
      el("span", { class: "time", title: fmt.time(i.event_time), text: fmt.time(i.event_time).slice(0, 16) }),
      el("span", { class: "badge", text: m.type }),
      el("div", {}, el("strong", { text: what }), detail ? el("div", { class: "muted small", text: detail }) : null,
        el("details", { class: "small" }, el("summary", { text: "message #" + i.seq }), el("pre", { text: JSON.stringify(m, null, 2) }))));
  }));
  if (!shown.length) $("timeline").append(el("li", { class: "empty", text: items.length ? "Nothing matches the filters." : "No messages." }));
  $("shown").textContent = shown.length + " of " + items.length + " loaded";
}

$("search").addEventListener("submit", search);
$("more").addEventListener("click", () => loadTimeline().catch(showError));
for (const id of ["f-type", "f-event", "f-text"]) $(id).addEventListener("input", drawTimeline);

whenReady(async () => {
  try { planSpec = await api("/admin/plan/spec"); } catch (e) { showError(e); }
  if (params.get("kind")) $("kind").value = params.get("kind");
  if (params.get("value")) $("value").value = params.get("value");
  if (params.get("id")) open(params.get("id"));
  else if ($("value").value) search();
  else $("value").focus();
});
