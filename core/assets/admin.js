// Shared by the admin pages (profiles, audiences, destinations): the admin token, safe DOM building
// (text only, never HTML from data) and the admin API client.
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
$("token").value = params.get("token") || sessionStorage.getItem("tp_admin_token") || "";
if (params.has("token")) { // keep the token out of the address bar and history
  params.delete("token");
  history.replaceState(null, "", location.pathname + location.search + (params.toString() ? "#" + params : ""));
}

/** Remembers the token typed in the header for this tab. */
function saveToken() { sessionStorage.setItem("tp_admin_token", $("token").value.trim()); }

/** An element holding `text` as text. */
function cell(tag, text, cls) {
  const e = document.createElement(tag);
  e.textContent = String(text ?? "");
  if (cls) e.className = cls;
  return e;
}

/** Calls the admin API with the token; `body` is sent as JSON (POST unless `method` says). */
async function api(path, { method, body } = {}) {
  const init = { method: method || (body ? "POST" : "GET"), headers: { authorization: "Bearer " + $("token").value.trim() } };
  if (body) { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}
