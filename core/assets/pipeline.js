// The Pipeline page: every stage's position, lag and counters (refreshed every 2 s), live throughput
// per stage sampled from the counters, messages received over time, successful and failed delivery
// calls per destination over time, and the quarantine with replay.
"use strict";
let minutes = 60, samples = [], lastHealth = null, drawnPeriod = null;
const KEEP = 90; // live samples kept (3 minutes at 2 s)

function stageState(s) {
  if (!s.running) return ["not running here", ""];
  if (s.failingSince) return ["failing since " + fmt.ago(s.failingSince), "bad"];
  if (s.behind > 0 && s.lagMs > 60000) return ["lagging", "warn"];
  return [s.behind > 0 ? "catching up" : "up to date", "ok"];
}

async function refresh() {
  const h = await api("/admin/pipeline/health?minutes=" + minutes);
  lastHealth = h;
  samples.push({ t: h.now, stages: Object.fromEntries(h.stages.map((s) => [s.stage, s.processed])) });
  if (samples.length > KEEP) samples.shift();
  const rate = (name) => {
    if (samples.length < 2) return null;
    const a = samples[samples.length - 2], b = samples[samples.length - 1];
    if (a.stages[name] == null || b.stages[name] == null || b.t === a.t) return null;
    return (b.stages[name] - a.stages[name]) * 1000 / (b.t - a.t);
  };
  $("stages").replaceChildren(...h.stages.map((s) => {
    const [word, cls] = stageState(s);
    const r = rate(s.stage);
    return el("tr", { "data-stage": s.stage },
      el("td", {}, el("b", { text: s.stage })), el("td", {}, el("span", { class: "badge " + cls, text: word })),
      el("td", { class: "n", text: fmt.num(s.position) + " / " + fmt.num(s.head) }),
      el("td", { class: "n", text: fmt.num(s.behind) }),
      el("td", { class: "n", text: s.behind ? fmt.duration(s.lagMs) : "0" }),
      el("td", { class: "n", text: r === null ? "—" : r.toFixed(r < 10 ? 1 : 0) + "/s" }),
      el("td", { class: "n", text: fmt.num(s.processed) }), el("td", { class: "n", text: fmt.num(s.retries) }),
      el("td", { class: "n", text: fmt.num(s.quarantined) }));
  }));
  drawRates(h);
  if (drawnPeriod !== String(minutes)) drawHistory(h);
  document.body.dataset.loaded = "1";
}

function drawRates(h) {
  if (samples.length < 2) { $("rate-chart").replaceChildren(cell("p", "Measuring…", "empty")); return; }
  const times = samples.slice(1).map((s) => s.t);
  const series = h.stages.filter((s) => s.running).map((s) => ({
    label: s.stage,
    values: samples.slice(1).map((b, i) => {
      const a = samples[i];
      return a.stages[s.stage] == null || b.stages[s.stage] == null ? 0 : Math.max(0, (b.stages[s.stage] - a.stages[s.stage]) * 1000 / (b.t - a.t));
    }),
  }));
  const end = samples[samples.length - 1].t;
  timeChart($("rate-chart"), times, series, { height: 180, xRange: [end - KEEP * 2000, end], summary: "Live throughput per stage over the last " + times.length * 2 + " seconds" });
}

function drawHistory(h) {
  drawnPeriod = String(minutes);
  const per = fmt.per(h.bucket);
  timeChart($("ingest-chart"), h.times, [{ label: "received per " + per, values: h.received }], { bars: true, height: 180,
    summary: "Messages received per " + per + ", " + h.received.reduce((a, b) => a + b, 0) + " in total" });
  const box = $("deliveries");
  box.replaceChildren();
  const enabled = h.destinations.filter((d) => d.enabled).map((d) => d.name);
  const names = [...new Set([...enabled, ...h.deliveries.map((d) => d.destination)])];
  if (!names.length) { box.append(cell("p", "No destination is enabled.", "empty")); return; }
  for (const name of names) {
    const d = h.deliveries.find((x) => x.destination === name) || { success: h.times.map(() => 0), errors: h.times.map(() => 0), totals: {} };
    const total = Object.values(d.totals).reduce((a, b) => a + b, 0);
    const ok = d.totals.success || 0;
    const chart = el("div", {});
    box.append(el("div", { class: "dest-chart", "data-destination": name },
      el("div", { class: "row" }, el("b", { text: name }), el("span", { class: "spacer" }),
        el("span", { class: "badge " + (total && ok < total ? (ok ? "warn" : "bad") : "ok"), text: total ? fmt.pct(ok, total) + " ok of " + fmt.num(total) + " calls" : "no calls" })),
      chart));
    timeChart(chart, h.times, [{ label: "success", values: d.success, color: "#11936f" }, { label: "failed", values: d.errors, color: "#c2364a" }],
      { bars: true, stacked: true, height: 130, summary: name + ": " + ok + " successful and " + (total - ok) + " failed calls" });
  }
}

async function quarantine() {
  const q = await api("/admin/quarantine?limit=50" + ($("all").checked ? "&all=true" : ""));
  const open = Object.entries(q.open);
  $("open").textContent = open.length ? "open: " + open.map(([s, n]) => s + " " + n).join(", ") : "nothing open";
  $("quarantine").replaceChildren(...(q.entries.length ? q.entries.map((e) => el("tr", {},
    el("td", { text: e.id }), el("td", { text: e.stage }), el("td", { class: "n", text: e.position }),
    el("td", { class: "small error", text: e.error }), el("td", { class: "n", text: e.attempts }),
    el("td", { class: "small", text: fmt.time(e.quarantined_at) }),
    el("td", {}, e.replayed_at ? el("span", { class: "badge " + (e.replay_error ? "bad" : "ok"), text: e.replay_error ? "replay failed" : "replayed" }) :
      el("button", { type: "button", class: "small", text: "Replay", "aria-label": "Replay quarantined entry " + e.id,
        "on:click": async () => { try { await api("/admin/quarantine/" + e.id + "/replay", { method: "POST" }); await quarantine(); } catch (err) { showError(err); } } })))) :
    [el("tr", {}, el("td", { colspan: 7, class: "empty", text: "Nothing is quarantined." }))]));
}

$("periods").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-minutes]");
  if (!b) return;
  minutes = Number(b.dataset.minutes);
  $("periods").querySelectorAll("button").forEach((x) => x.setAttribute("aria-pressed", String(x === b)));
  drawnPeriod = null;
  refresh().catch(showError);
});
$("all").addEventListener("change", () => quarantine().catch(showError));

whenReady(() => {
  every(2000, refresh);
  every(10000, quarantine);
  setInterval(() => { if (lastHealth) drawnPeriod = null; }, 10000); // redraw the history charts now and then
});
