// The visual audience builder: blocks (trait, account trait, performed event N times within a
// window, in audience, AND/OR groups, each with a NOT switch) that compile to the condition's JSON
// tree. Every change asks the preview endpoint for the live size, sample members (email and name)
// and the text form; the text form can be edited and applied back to the blocks (the server parses
// it), so blocks and text round-trip. Blocks are dragged from the palette or between groups, or
// added, moved and removed with the keyboard.
"use strict";

const OPS = [["=", "is"], ["!=", "is not"], [">", ">"], [">=", "≥"], ["<", "<"], ["<=", "≤"],
  ["contains", "contains"], ["starts_with", "starts with"], ["in", "is one of"], ["exists", "exists"]];
const COUNT_OPS = [["at_least", "at least"], ["at_most", "at most"], ["exactly", "exactly"]];
const COMPUTED = ["computed.messages_total", "computed.first_seen", "computed.last_seen", "computed.active_days_30d", "computed.journey_stage"];
const LABELS = { trait: "Trait", account: "Account trait", performed: "Performed event", audience: "In audience", and: "AND group", or: "OR group" };

let uid = 0;
let plan = { traits: [], events: [] };
let root = group("and");
let target = root.uid;          // the group blocks are added to from the palette (keyboard)
let dragging = null;            // {kind} from the palette or {uid} of a block being moved
let previewSeq = 0, previewTimer = null, textDirty = false;

function group(op, children = []) { return { uid: ++uid, type: "group", op, not: false, children }; }
function block(type) {
  const b = { uid: ++uid, type, not: false };
  if (type === "trait" || type === "account") Object.assign(b, { path: "", op: "=", value: "" });
  if (type === "performed") Object.assign(b, { event: "", filters: [], countOp: "at_least", n: "1", window: "within", days: "30" });
  if (type === "audience") b.id = "";
  return b;
}
function fresh(kind) { return kind === "and" || kind === "or" ? group(kind) : block(kind); }

/** The block with this uid and its parent group. */
function find(u, node = root, parent = null) {
  if (node.uid === u) return { node, parent };
  for (const c of node.children || []) { const f = find(u, c, node); if (f) return f; }
  return null;
}
function contains(node, u) { return node.uid === u || (node.children || []).some((c) => contains(c, u)); }

// ---- blocks → condition tree -------------------------------------------------------------------

/** The plan's type of a trait path (`account.x`, `traits.x` and `x` read the same table). */
function planType(path) {
  const name = path.replace(/^(account|traits)\./, "");
  if (path.startsWith("computed.")) return name === "computed.journey_stage" ? "string" : "number";
  const t = plan.traits.find((t) => t.name === name);
  return t ? t.type : null;
}
function propertyType(event, prop) {
  const e = plan.events.find((e) => e.name === event);
  const p = e && e.properties.find((p) => p.name === prop);
  return p ? p.type : null;
}

/** One scalar as typed: quotes force text; otherwise the plan's type, else what it looks like. */
function scalar(raw, type) {
  const s = raw.trim();
  if (/^'.*'$|^".*"$/s.test(s) && s.length >= 2) return s.slice(1, -1);
  if (type === "integer" || type === "number") return Number.isFinite(Number(s)) && s !== "" ? Number(s) : undefined;
  if (type === "boolean") return s === "true" ? true : s === "false" ? false : undefined;
  if (type) return s;
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  if (s === "true" || s === "false") return s === "true";
  return s;
}
/** How a literal is shown in a value field (text that would read as a number or boolean is quoted). */
function show(v) {
  if (Array.isArray(v)) return v.map(show).join(", ");
  if (typeof v === "string") return /^-?\d+(\.\d+)?$/.test(v.trim()) || v === "true" || v === "false" || v.includes(",") ? "'" + v + "'" : v;
  return String(v);
}

function comparison(b, path, type, problems) {
  if (!path) problems.push({ uid: b.uid, field: "path", why: "name the trait" });
  const c = { path, op: b.op };
  if (b.op === "exists") return c;
  if (b.op === "in") {
    const items = b.value.split(",").filter((s) => s.trim() !== "").map((s) => scalar(s, type));
    if (!items.length || items.some((x) => x === undefined || x === "")) problems.push({ uid: b.uid, field: "value", why: "list values separated by commas" });
    c.value = items;
  } else {
    const v = scalar(b.value, type);
    if (v === undefined || v === "") problems.push({ uid: b.uid, field: "value", why: "give a " + (type || "value") });
    if ((b.op === "contains" || b.op === "starts_with") && typeof v !== "string") problems.push({ uid: b.uid, field: "value", why: "give text" });
    c.value = v;
  }
  return c;
}

/** The JSON condition tree of a block (null when empty); problems collects incomplete fields. */
function toTree(b, problems) {
  let t = null;
  if (b.type === "group") {
    const kids = b.children.map((c) => toTree(c, problems)).filter(Boolean);
    if (!kids.length) { problems.push({ uid: b.uid, field: "children", why: "an empty group" }); return null; }
    t = kids.length === 1 ? kids[0] : { [b.op]: kids };
  } else if (b.type === "trait" || b.type === "account") {
    const name = b.path.trim();
    const path = name && b.type === "account" ? "account." + name.replace(/^account\./, "") : name;
    t = { trait: comparison(b, path, planType(path), problems) };
  } else if (b.type === "performed") {
    const event = b.event.trim();
    if (!event) problems.push({ uid: b.uid, field: "event", why: "choose an event" });
    const n = Number(b.n);
    if (!Number.isInteger(n) || n < 0) problems.push({ uid: b.uid, field: "n", why: "a whole number of times" });
    const p = { event: event.toLowerCase() === "any" ? "any" : event, count: { op: b.countOp, n: Number.isInteger(n) ? n : 1 } };
    if (b.window === "within") {
      const d = Number(b.days);
      if (!Number.isInteger(d) || d < 1) problems.push({ uid: b.uid, field: "days", why: "at least 1 day" });
      p.within_days = Number.isInteger(d) ? d : 1;
    }
    const where = b.filters.map((f) => comparison(f, f.path.trim(), propertyType(event, f.path.trim()), problems));
    if (where.length) p.where = where;
    t = { performed: p };
  } else if (b.type === "audience") {
    if (!b.id.trim()) problems.push({ uid: b.uid, field: "id", why: "choose an audience" });
    t = { in_audience: b.id.trim() };
  }
  return t && b.not ? { not: t } : t;
}

// ---- condition tree → blocks -------------------------------------------------------------------

function comparisonFields(c) {
  return { op: c.op, value: c.value === undefined || c.op === "exists" ? "" : show(c.value) };
}
function fromTree(t) {
  if (t.not !== undefined) {
    const inner = fromTree(t.not);
    if (inner.not) { const g = group("and", [inner]); g.not = true; return g; }
    inner.not = true;
    return inner;
  }
  if (t.and || t.or) return group(t.and ? "and" : "or", (t.and || t.or).map(fromTree));
  if (t.trait) {
    const p = t.trait.path;
    const b = block(p.startsWith("account.") ? "account" : "trait");
    return Object.assign(b, { path: p.startsWith("account.") ? p.slice(8) : p }, comparisonFields(t.trait));
  }
  if (t.performed) {
    const p = t.performed, b = block("performed");
    return Object.assign(b, {
      event: p.event === "any" ? "ANY" : p.event,
      countOp: (p.count || {}).op || "at_least", n: String((p.count || {}).n ?? 1),
      window: p.within_days ? "within" : "ever", days: String(p.within_days || 30),
      filters: (p.where || []).map((f) => Object.assign({ uid: ++uid, path: f.path }, comparisonFields(f))),
    });
  }
  if (t.in_audience !== undefined) return Object.assign(block("audience"), { id: t.in_audience });
  throw new Error("unknown condition " + JSON.stringify(t));
}
function load(tree) {
  const b = fromTree(tree);
  root = b.type === "group" && !b.not ? b : group("and", [b]);
  target = root.uid;
  render();
}

// ---- rendering ---------------------------------------------------------------------------------

function options(list, selected) {
  return list.map(([v, label]) => el("option", { value: v, text: label, selected: v === selected }));
}
/** A field bound to `obj[key]`: input or select; edits update the state and the preview. */
function field(obj, key, control, label) {
  control.dataset.f = key;
  control.setAttribute("aria-label", label);
  control.value = obj[key];
  control.addEventListener("input", () => { obj[key] = control.value; changed(); });
  return control;
}
function tools(b, parent) {
  if (!parent) return el("span", { class: "tools" });
  const i = parent.children.indexOf(b);
  return el("span", { class: "tools" },
    el("button", { type: "button", class: "small", "aria-label": "Move " + describe(b) + " up", disabled: i === 0, text: "↑", "on:click": () => move(b, parent, i - 1) }),
    el("button", { type: "button", class: "small", "aria-label": "Move " + describe(b) + " down", disabled: i === parent.children.length - 1, text: "↓", "on:click": () => move(b, parent, i + 1) }),
    el("button", { type: "button", class: "small", "aria-label": "Remove " + describe(b), text: "✕", "on:click": () => remove(b, parent) }));
}
function describe(b) {
  if (b.type === "group") return (b.op === "and" ? "AND" : "OR") + " group";
  if (b.type === "performed") return "event " + (b.event || "block");
  if (b.type === "audience") return "audience " + (b.id || "block");
  return (b.type === "account" ? "account trait " : "trait ") + (b.path || "block");
}
function notSwitch(b) {
  const box = el("input", { type: "checkbox", checked: b.not, "on:change": (e) => { b.not = e.target.checked; render(); changed(); } });
  return el("label", { class: "not" + (b.not ? " on" : ""), title: "Negate this block" }, box, " not");
}
function handle(b) {
  const h = el("span", { class: "handle", draggable: "true", title: "Drag to move", "aria-hidden": "true", text: "⠿" });
  h.addEventListener("dragstart", (e) => {
    dragging = { uid: b.uid };
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", "move:" + b.uid);
    const node = h.closest(".block");
    if (node) e.dataTransfer.setDragImage(node, 12, 12);
  });
  h.addEventListener("dragend", () => { dragging = null; clearMarkers(); });
  return h;
}

function renderComparison(b, pathList, pathLabel) {
  const value = field(b, "value", el("input", { size: 14, placeholder: "value" }), "value");
  value.hidden = b.op === "exists";
  const op = field(b, "op", el("select", {}, options(OPS, b.op)), "operator");
  op.addEventListener("change", () => { value.hidden = b.op === "exists"; value.placeholder = b.op === "in" ? "a, b, c" : "value"; });
  return [field(b, "path", el("input", { list: pathList, size: 20, placeholder: pathLabel }), pathLabel), op, value];
}

function renderBlock(b, parent) {
  const head = [parent ? handle(b) : null, notSwitch(b)];
  if (b.type === "group") {
    const op = field(b, "op", el("select", { class: "group-op" }, options([["and", "ALL of (AND)"], ["or", "ANY of (OR)"]], b.op)), "group joins its blocks with");
    op.addEventListener("change", () => render());
    const kids = el("div", { class: "children", "data-group": b.uid });
    kids.append(...b.children.map((c) => renderBlock(c, b)));
    kids.append(el("div", { class: "drop-hint", text: b.children.length ? "drop here" : "Drop blocks here, or add one below" }));
    const kind = el("select", { "aria-label": "Block to add to this group" }, options(Object.entries(LABELS), "trait"));
    const node = el("div", { class: "block group " + b.op + (b.not ? " negated" : ""), "data-uid": b.uid, role: "group",
      "aria-label": (parent ? "" : "Root ") + describe(b) },
      el("div", { class: "head" }, head, el("span", { class: "kind", text: "Match" }), op, el("span", { class: "spacer" }), tools(b, parent)),
      kids,
      el("div", { class: "add" }, kind, el("button", { type: "button", class: "small", text: "Add", "aria-label": "Add the chosen block to this group",
        "on:click": () => add(kind.value, b.uid) })));
    node.addEventListener("focusin", (e) => { if (e.target.closest(".block.group") === node) target = b.uid; });
    wireDrop(kids, b);
    return node;
  }
  let body;
  if (b.type === "trait") body = renderComparison(b, "trait-paths", "trait");
  else if (b.type === "account") body = renderComparison(b, "account-paths", "account trait");
  else if (b.type === "audience") body = [field(b, "id", el("input", { list: "audience-ids", size: 24, placeholder: "audience id" }), "audience id")];
  else if (b.type === "performed") {
    const days = field(b, "days", el("input", { type: "number", min: 1, size: 4, class: "num" }), "days");
    const daysLabel = el("span", { text: "days" });
    days.hidden = daysLabel.hidden = b.window !== "within";
    const windowSel = field(b, "window", el("select", {}, options([["within", "within"], ["ever", "ever"]], b.window)), "time window");
    windowSel.addEventListener("change", () => { days.hidden = daysLabel.hidden = b.window !== "within"; });
    const filters = el("div", { class: "filters" }, b.filters.map((f) => el("div", { class: "filter" },
      el("span", { class: "muted", text: "where" }),
      renderComparison(f, "props-" + b.uid, "property"),
      el("button", { type: "button", class: "small", text: "✕", "aria-label": "Remove filter " + (f.path || ""),
        "on:click": () => { b.filters.splice(b.filters.indexOf(f), 1); render(); changed(); } }))));
    const props = el("datalist", { id: "props-" + b.uid });
    const spec = plan.events.find((e) => e.name === b.event);
    props.append(...(spec ? spec.properties : []).map((p) => el("option", { value: p.name })));
    body = [field(b, "event", el("input", { list: "event-names", size: 20, placeholder: "event" }), "event"),
      field(b, "countOp", el("select", {}, options(COUNT_OPS, b.countOp)), "how many times"),
      field(b, "n", el("input", { type: "number", min: 0, size: 4, class: "num" }), "times"), el("span", { text: "times" }),
      windowSel, days, daysLabel,
      el("button", { type: "button", class: "small", text: "+ where", "aria-label": "Add a property filter",
        "on:click": () => { b.filters.push({ uid: ++uid, path: "", op: "=", value: "" }); render(); } }),
      props, filters];
  }
  return el("div", { class: "block " + b.type + (b.not ? " negated" : ""), "data-uid": b.uid, role: "group", "aria-label": LABELS[b.type] + " block" },
    el("div", { class: "head" }, head, el("span", { class: "kind", text: LABELS[b.type] }), body), tools(b, parent));
}

/** Redraws the blocks, keeping focus on the same control when it still exists. */
function render() {
  const a = document.activeElement;
  const keep = a && a.closest && a.closest("[data-uid]") ? [a.closest("[data-uid]").dataset.uid, a.dataset.f, a.getAttribute("aria-label")] : null;
  $("canvas").replaceChildren(renderBlock(root, null));
  if (keep) {
    const scope = $("canvas").querySelector('[data-uid="' + keep[0] + '"]');
    const again = scope && (keep[1] ? scope.querySelector('[data-f="' + keep[1] + '"]') : scope.querySelector('[aria-label="' + CSS.escape(keep[2] || "") + '"]'));
    if (again) again.focus();
  }
  changed();
}

// ---- editing -----------------------------------------------------------------------------------

function add(kind, groupUid, index) {
  const g = find(groupUid)?.node || root;
  const b = fresh(kind);
  g.children.splice(index ?? g.children.length, 0, b);
  render();
  $("announce").textContent = LABELS[kind] + " added" + (g === root ? "" : " to the group");
  const first = $("canvas").querySelector('[data-uid="' + b.uid + '"] input:not([type=checkbox]), [data-uid="' + b.uid + '"] select');
  if (first) first.focus();
}
function move(b, parent, to) {
  if (to < 0 || to >= parent.children.length) return;
  parent.children.splice(parent.children.indexOf(b), 1);
  parent.children.splice(to, 0, b);
  render();
  const again = $("canvas").querySelector('[data-uid="' + b.uid + '"] .tools button');
  if (again) again.focus();
}
function remove(b, parent) {
  parent.children.splice(parent.children.indexOf(b), 1);
  render();
  $("announce").textContent = describe(b) + " removed";
}

function clearMarkers() { document.querySelectorAll(".children.over").forEach((x) => { x.classList.remove("over"); x.style.removeProperty("--drop-y"); }); }
/** Where in `kids` a drop at clientY lands: the index of the first child block below it. */
function dropIndex(kids, y) {
  const blocks = [...kids.children].filter((c) => c.classList.contains("block"));
  const i = blocks.findIndex((c) => { const r = c.getBoundingClientRect(); return y < r.top + r.height / 2; });
  return i < 0 ? blocks.length : i;
}
function wireDrop(kids, g) {
  kids.addEventListener("dragover", (e) => {
    if (!dragging) return;
    if (dragging.uid && contains(find(dragging.uid).node, g.uid)) return; // not into itself
    e.preventDefault();
    e.stopPropagation();
    e.dataTransfer.dropEffect = dragging.uid ? "move" : "copy";
    clearMarkers();
    kids.classList.add("over");
  });
  kids.addEventListener("dragleave", (e) => { if (!kids.contains(e.relatedTarget)) kids.classList.remove("over"); });
  kids.addEventListener("drop", (e) => {
    if (!dragging) return;
    e.preventDefault();
    e.stopPropagation();
    const index = dropIndex(kids, e.clientY);
    const what = dragging;
    dragging = null;
    clearMarkers();
    if (what.kind) { add(what.kind, g.uid, index); return; }
    const { node, parent } = find(what.uid);
    if (!parent || contains(node, g.uid)) return;
    let at = index;
    if (parent === g && parent.children.indexOf(node) < index) at -= 1;
    parent.children.splice(parent.children.indexOf(node), 1);
    g.children.splice(at, 0, node);
    render();
  });
}

for (const b of document.querySelectorAll("#palette button")) {
  b.addEventListener("dragstart", (e) => {
    dragging = { kind: b.dataset.kind };
    e.dataTransfer.effectAllowed = "copy";
    e.dataTransfer.setData("text/plain", "new:" + b.dataset.kind);
  });
  b.addEventListener("dragend", () => { dragging = null; clearMarkers(); });
  b.addEventListener("click", () => add(b.dataset.kind, target));
}

// ---- preview, text form, save --------------------------------------------------------------------

function changed() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(() => preview().catch(showError), 250);
}

async function preview() {
  const problems = [];
  const tree = toTree(root, problems);
  $("canvas").querySelectorAll("[aria-invalid]").forEach((x) => x.removeAttribute("aria-invalid"));
  $("canvas").querySelectorAll(".block.incomplete").forEach((x) => x.classList.remove("incomplete"));
  for (const p of problems) {
    const scope = $("canvas").querySelector('[data-uid="' + p.uid + '"]');
    if (!scope) continue;
    const f = scope.querySelector('[data-f="' + p.field + '"]');
    if (f) { f.setAttribute("aria-invalid", "true"); f.title = p.why; } else scope.classList.add("incomplete");
  }
  const box = $("estimate-note");
  if (!tree || problems.length) {
    previewSeq++;
    $("count").textContent = "—";
    box.textContent = tree || problems.length ? "Complete the highlighted fields: " + [...new Set(problems.map((p) => p.why))].join("; ") + "." : "Add blocks to start.";
    delete document.body.dataset.count;
    if (!textDirty) $("cond").value = "";
    return;
  }
  const mine = ++previewSeq;
  const p = await api("/admin/audiences/preview", { body: { condition: tree } });
  if (mine !== previewSeq) return;
  showPreview(p);
  if (!textDirty) { $("cond").value = p.condition; $("cond").removeAttribute("aria-invalid"); $("text-error").textContent = ""; }
}

function showPreview(p) {
  $("count").textContent = fmt.num(p.count);
  $("of").textContent = fmt.num(p.of);
  $("bar-fill").style.width = (p.of ? Math.max(p.count ? 1 : 0, 100 * p.count / p.of) : 0) + "%";
  $("estimate-note").textContent = fmt.pct(p.count, p.of) + " of profiles match today.";
  $("sample").replaceChildren(...(p.members.length ? p.members.map((m) => el("li", {},
    el("a", { href: "/profiles#id=" + encodeURIComponent(m.id), text: m.name || m.email || m.id }),
    m.name && m.email ? el("span", { class: "muted small", text: " " + m.email }) : null)) :
    [el("li", { class: "empty", text: "Nobody matches yet." })]));
  document.body.dataset.count = p.count;
}

async function applyText() {
  const text = $("cond").value.trim();
  $("text-error").textContent = "";
  $("cond").removeAttribute("aria-invalid");
  if (!text) return;
  try {
    const p = await api("/admin/audiences/preview", { body: { condition: text } });
    textDirty = false;
    load(p.tree);
    $("cond").value = p.condition;
    showPreview(p);
    $("announce").textContent = "Blocks rebuilt from the text";
  } catch (e) {
    $("cond").setAttribute("aria-invalid", "true");
    $("text-error").textContent = e.message;
    const col = /column (\d+)/.exec(e.message);
    if (col) { const i = Number(col[1]) - 1; $("cond").focus(); $("cond").setSelectionRange(i, i + 1); }
  }
}

$("cond").addEventListener("input", () => { textDirty = true; });
$("cond").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); applyText(); } });
$("apply").addEventListener("click", applyText);

$("meta").addEventListener("submit", async (e) => {
  e.preventDefault();
  showError(null);
  $("result").textContent = "";
  const problems = [];
  const tree = toTree(root, problems);
  if (!tree || problems.length) { showError(new Error("The condition is incomplete: " + (problems.map((p) => p.why).join("; ") || "add blocks"))); return; }
  try {
    const id = $("aid").value.trim();
    const saved = await api("/admin/audiences", { body: { id, name: $("aname").value.trim() || id, description: $("adesc").value.trim(), condition: tree } });
    $("result").replaceChildren("Saved ", el("a", { href: "/audiences#id=" + encodeURIComponent(saved.id), text: saved.id }),
      saved.warnings.length ? " (" + saved.warnings.join("; ") + ")" : "");
    $("result").dataset.saved = saved.id;
    $("cond").value = saved.condition;
    textDirty = false;
  } catch (err) { showError(err); }
});

whenReady(async () => {
  try {
    const [spec, audiences] = await Promise.all([api("/admin/plan/spec"), api("/admin/audiences")]);
    plan = spec;
    const opt = (v, label) => el("option", { value: v, label });
    $("trait-paths").append(...plan.traits.map((t) => opt(t.name, t.type + " · " + t.description)), ...COMPUTED.map((c) => opt(c, "computed")));
    $("account-paths").append(...plan.traits.map((t) => opt(t.name, t.type + " · " + t.description)));
    $("event-names").append(opt("ANY", "any track, page or screen"), ...plan.events.map((e) => opt(e.name, (e.stage || "") + " · " + e.description)));
    $("audience-ids").append(...audiences.map(({ audience: a }) => opt(a.id, a.name)));
    const id = params.get("id");
    const existing = id && audiences.find(({ audience: a }) => a.id === id);
    if (existing) {
      const one = await api("/admin/audiences/" + encodeURIComponent(id));
      $("aid").value = one.audience.id;
      $("aname").value = one.audience.name;
      $("adesc").value = one.audience.description;
      if (one.tree) load(one.tree); else render();
    } else {
      render();
    }
  } catch (e) { showError(e); }
});
