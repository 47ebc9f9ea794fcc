// The Audiences page: the list, and for the selected audience its live member counter, size over
// time (from the membership history), the entered/exited feed, the destinations syncing it and
// its members — people by name and email, linked to their profiles.
"use strict";
let current = null, range = "all", lastEvent = 0, stopLive = null;

async function loadList() {
  const rows = await api("/admin/audiences");
  $("list").replaceChildren(...rows.map(({ audience: a, members }) => {
    const tr = el("tr", { class: "pick", "data-id": a.id, tabindex: 0, "aria-label": a.name + ", " + members + " members" },
      el("td", {}, el("div", { text: a.name }), el("code", { class: "muted", text: a.id })),
      el("td", { class: "n", text: fmt.num(members) }));
    tr.addEventListener("click", () => select(a.id));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(a.id); } });
    return tr;
  }));
  return rows;
}

function personLink(p) {
  const id = p.profileId || p.profile_id || p.id;
  return el("a", { href: "/profiles#id=" + encodeURIComponent(id), title: id, text: fmt.person(p) });
}

async function select(id) {
  current = id;
  lastEvent = 0;
  history.replaceState(null, "", "#id=" + encodeURIComponent(id));
  document.querySelectorAll("#list tr").forEach((r) => r.classList.toggle("selected", r.dataset.id === id));
  const { audience: a, members } = await api("/admin/audiences/" + encodeURIComponent(id));
  $("detail").hidden = false;
  $("which").textContent = a.name + " (" + a.id + ")";
  $("description").textContent = a.description || "";
  $("condition").textContent = a.condition;
  $("edit").href = "/audiences/builder#id=" + encodeURIComponent(a.id);
  $("counter").textContent = fmt.num(members);
  $("backfill").textContent = a.backfill_total ? fmt.pct(a.backfill_done, a.backfill_total) : "—";
  $("feed").replaceChildren();
  await Promise.all([drawSize(), loadDestinations(), loadMembers()]);
  if (stopLive) stopLive();
  stopLive = every(2000, live);
}

async function drawSize() {
  const s = await api("/admin/audiences/" + encodeURIComponent(current) + "/size?range=" + range + "&points=80");
  $("entered").textContent = fmt.num(s.entered);
  $("exited").textContent = fmt.num(s.exited);
  timeChart($("size-chart"), s.points.map((p) => p[0]), [{ label: "members", values: s.points.map((p) => p[1]) }],
    { height: 190, step: true, fill: true,
      summary: "Members of " + current + " from " + fmt.time(s.from) + " to " + fmt.time(s.to) + ": " + s.points[0][1] + " to " + s.points[s.points.length - 1][1] });
}

/** The live part: the member counter and new entered/exited events, every two seconds. */
async function live() {
  if (!current) return;
  const id = current;
  const q = lastEvent ? "after=" + lastEvent + "&limit=100" : "limit=30";
  const f = await api("/admin/audiences/" + encodeURIComponent(id) + "/feed?" + q);
  if (id !== current) return;
  const counter = $("counter");
  if (counter.textContent !== fmt.num(f.members)) {
    counter.textContent = fmt.num(f.members);
    counter.classList.remove("bump"); void counter.offsetWidth; counter.classList.add("bump");
  }
  const events = lastEvent ? f.events : f.events.slice().reverse(); // oldest first
  for (const e of events) {
    lastEvent = Math.max(lastEvent, e.id);
    const entered = e.kind === "audience_entered";
    $("feed").prepend(el("li", { class: entered ? "in" : "out" },
      el("span", { class: "badge " + (entered ? "ok" : "bad"), text: entered ? "entered" : "exited" }),
      personLink(e), el("span", { class: "muted small", text: fmt.time(e.at) + " · " + e.reason })));
  }
  while ($("feed").children.length > 200) $("feed").lastChild.remove();
  if (!$("feed").children.length) $("feed").append(el("li", { class: "empty", text: "Nobody has entered or exited yet." }));
  else $("feed").querySelectorAll("li.empty").forEach((x) => x.remove());
  if (lastEvent && events.length) { loadMembers(); loadDestinations(); }
}

async function loadDestinations() {
  const d = await api("/admin/audiences/" + encodeURIComponent(current) + "/destinations");
  const cls = { "in sync": "ok", syncing: "warn", failing: "bad", disabled: "" };
  $("destinations").replaceChildren(...(d.destinations.length ? d.destinations.map((x) => el("tr", { "data-name": x.name },
    el("td", { text: x.name }),
    el("td", {}, el("span", { class: "badge " + (cls[x.state] || ""), text: x.state, title: x.lastError || "" })),
    el("td", { class: "n", text: fmt.num(x.outbox.delivered) }),
    el("td", { class: "n", text: fmt.num(x.outbox.pending + x.outbox.delivering) }),
    el("td", { class: "n", text: fmt.num(x.outbox.dead) }),
    el("td", { class: "small muted", text: x.state !== "in sync" && x.lastError ? x.lastError : fmt.ago(x.lastAt), title: x.lastError || "" }))) :
    [el("tr", {}, el("td", { colspan: 6, class: "empty", text: "No enabled destination syncs this audience." }))]));
}

async function loadMembers() {
  const m = await api("/admin/audiences/" + encodeURIComponent(current) + "/members?limit=25");
  $("members").replaceChildren(...(m.members.length ? m.members.map((row) => el("tr", {},
    el("td", {}, personLink(row)), el("td", { class: "small muted", text: fmt.time(row.entered_at) }))) :
    [el("tr", {}, el("td", { colspan: 2, class: "empty", text: "No members." }))]));
}

$("ranges").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-range]");
  if (!b) return;
  range = b.dataset.range;
  $("ranges").querySelectorAll("button").forEach((x) => x.setAttribute("aria-pressed", String(x === b)));
  drawSize().catch(showError);
});

whenReady(async () => {
  try {
    const rows = await loadList();
    const wanted = params.get("id") || (rows[0] && rows[0].audience.id);
    if (wanted) await select(wanted);
  } catch (e) { showError(e); }
});
