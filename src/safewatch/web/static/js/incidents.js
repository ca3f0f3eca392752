// Incidents: filter by camera, rule, severity, status and time; page through; review with the
// keyboard (j/k move, Enter opens, a/r/f acknowledge/resolve/false positive, n/p pages).
import { api, attempt, can, el, fmtDuration, fmtTime, pageData, parseLocal, STATUS_LABEL, toast } from "./api.js";

const data = pageData();
const form = document.getElementById("filters");
const tbody = document.querySelector("#incidents tbody");
const table = document.getElementById("incidents");
const preview = document.getElementById("preview");
const summary = document.getElementById("summary");
const pageInfo = document.getElementById("page-info");
const LIMIT = 50;
let offset = 0;
let items = [];
let selected = -1;
let total = 0;

const cameraSelect = document.getElementById("f-camera");
cameraSelect.removeAttribute("multiple");
cameraSelect.append(el("option", { value: "" }, "any"));
for (const camera of data.cameras || []) cameraSelect.append(el("option", { value: camera.id }, camera.name));
const ruleSelect = document.getElementById("f-rule");
for (const rule of data.rules || []) ruleSelect.append(el("option", { value: rule.id }, rule.id));

// Filters live in the URL, so a filtered view can be bookmarked and shared.
const params = new URLSearchParams(location.search);
for (const [key, value] of params) {
  const input = form.elements.namedItem(key);
  if (input && key !== "since" && key !== "until") input.value = value;
}
offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);

function query() {
  const q = new URLSearchParams();
  for (const name of ["camera", "rule", "severity", "status"]) {
    const value = form.elements.namedItem(name).value;
    if (value) q.set(name, value);
  }
  const since = parseLocal(form.elements.namedItem("since").value);
  const until = parseLocal(form.elements.namedItem("until").value);
  if (since !== null) q.set("since", since.toFixed(0));
  if (until !== null) q.set("until", until.toFixed(0));
  return q;
}

function row(incident, index) {
  return el("tr", {
    class: `sev-${incident.severity} st-${incident.status}`,
    dataset: { id: incident.id, index: String(index) },
    onclick: () => select(index),
    ondblclick: () => { location.href = `/incidents/${incident.id}`; },
  },
  el("td", { class: "nowrap" }, fmtTime(incident.started_at)),
  el("td", {}, incident.camera_id),
  el("td", {}, incident.rule_id),
  el("td", {}, el("span", { class: `sev sev-${incident.severity}` }, incident.severity)),
  el("td", {}, el("span", { class: `status st-${incident.status}` }, STATUS_LABEL[incident.status])),
  el("td", { class: "num" }, fmtDuration(incident.duration)),
  el("td", { class: "num" }, incident.peak_confidence.toFixed(2)),
  el("td", { class: "message" }, incident.message));
}

async function load() {
  const q = query();
  const started = performance.now();
  q.set("limit", String(LIMIT));
  q.set("offset", String(offset));
  const page = await attempt(() => api(`/api/v1/incidents?${q}`));
  if (!page) return;
  items = page.items;
  total = page.total;
  tbody.replaceChildren(...items.map(row));
  if (!items.length) tbody.append(el("tr", {}, el("td", { colspan: "8", class: "muted" }, "No incidents match.")));
  const ms = Math.round(performance.now() - started);
  summary.textContent = `${total} incident${total === 1 ? "" : "s"} · ${ms} ms`;
  pageInfo.textContent = total ? `${offset + 1}–${offset + items.length} of ${total}` : "";
  document.getElementById("prev").disabled = offset === 0;
  document.getElementById("next").disabled = !page.has_more;
  const shown = new URLSearchParams(q);
  shown.delete("limit");
  if (!offset) shown.delete("offset");
  history.replaceState(null, "", `${location.pathname}${shown.toString() ? `?${shown}` : ""}`);
  table.dataset.loaded = String(Date.now());
  select(items.length ? Math.min(Math.max(selected, 0), items.length - 1) : -1);
}

function select(index) {
  selected = index;
  for (const tr of tbody.querySelectorAll("tr")) tr.classList.toggle("selected", tr.dataset.index === String(index));
  const incident = items[index];
  if (!incident) { preview.replaceChildren(el("p", { class: "muted" }, "Nothing selected.")); return; }
  tbody.querySelector(`tr[data-index="${index}"]`)?.scrollIntoView({ block: "nearest" });
  const actions = can("operator") ? el("div", { class: "actions" },
    ...[["acknowledged", "Acknowledge", "a"], ["resolved", "Resolve", "r"], ["false_positive", "False positive", "f"]]
      .map(([status, label, key]) => el("button", { dataset: { status }, onclick: () => transition(status) }, label, " ", el("kbd", {}, key)))) : null;
  preview.replaceChildren(
    el("h3", {}, incident.message),
    incident.has_still ? el("img", { src: `/api/v1/incidents/${incident.id}/still`, alt: "Evidence still", class: "still" }) : el("p", { class: "muted" }, "No still."),
    el("dl", { class: "facts-list" },
      el("dt", {}, "Camera"), el("dd", {}, incident.camera_id),
      el("dt", {}, "Rule"), el("dd", {}, `${incident.rule_id} (${incident.rule_kind})`),
      el("dt", {}, "Started"), el("dd", {}, fmtTime(incident.started_at)),
      el("dt", {}, "Duration"), el("dd", {}, fmtDuration(incident.duration)),
      el("dt", {}, "Status"), el("dd", {}, STATUS_LABEL[incident.status])),
    actions,
    el("p", {}, el("a", { href: `/incidents/${incident.id}` }, "Open incident ›")));
}

async function transition(status) {
  const incident = items[selected];
  if (!incident) return;
  const result = await attempt(() => api(`/api/v1/incidents/${incident.id}/transition`, { method: "POST", body: { status } }),
    `${incident.id.slice(0, 8)}: ${STATUS_LABEL[status]}`);
  if (result) {
    items[selected] = result.incident;
    tbody.querySelector(`tr[data-index="${selected}"]`)?.replaceWith(row(result.incident, selected));
    select(selected);
  }
}

form.addEventListener("submit", (event) => { event.preventDefault(); offset = 0; selected = 0; load(); });
form.addEventListener("reset", () => { setTimeout(() => { offset = 0; load(); }, 0); });
document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - LIMIT); load(); });
document.getElementById("next").addEventListener("click", () => { offset += LIMIT; load(); });

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
  const keys = {
    j: () => select(Math.min(items.length - 1, selected + 1)),
    ArrowDown: () => select(Math.min(items.length - 1, selected + 1)),
    k: () => select(Math.max(0, selected - 1)),
    ArrowUp: () => select(Math.max(0, selected - 1)),
    Enter: () => { if (items[selected]) location.href = `/incidents/${items[selected].id}`; },
    a: () => transition("acknowledged"),
    r: () => transition("resolved"),
    f: () => transition("false_positive"),
    n: () => { if (!document.getElementById("next").disabled) { offset += LIMIT; load(); } },
    p: () => { if (offset) { offset = Math.max(0, offset - LIMIT); load(); } },
  };
  const action = keys[event.key];
  if (action) { event.preventDefault(); action(); }
});

// New incidents appear at the top of the first page without losing the reviewer's place.
let refresh = null;
document.addEventListener("safewatch:incident", () => {
  if (offset !== 0) return;
  clearTimeout(refresh);
  refresh = setTimeout(load, 1000);
});

load().then(() => table.focus());
if (!can("operator")) toast("Viewer: you can review but not change incidents.");
