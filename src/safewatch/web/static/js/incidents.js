// Incidents: triage that cannot mislead. Filter by camera, rule, severity, status and time (presets
// for the last hour, the current shift and today); everything lives in the URL, so a reload or a
// shared link shows the same view. Review with the keyboard (j/k move, x checks, Enter opens,
// a/r/f acknowledge/resolve/false positive, n/p pages).
//
// Two guarantees an operator relies on:
// * The selection is an incident id, never a row number. New incidents reload the list (on the
//   first page), and the row that holds the selected incident stays selected wherever it moved;
//   a decision on an earlier page moves the page back with it (followSelection); if it left the
//   page anyway the preview keeps showing it, a/r/f decide it and j/k go to the rows after/before
//   it. The next key acts on what was looked at.
// * A flood is one row. Incidents of the same rule, camera and zone that started within
//   GROUP_WINDOW of each other are grouped (on the page shown) into one row with a count; a
//   decision on that row applies to exactly the incidents the row counted when it was drawn.
import { api, attempt, can, el, filterOption, fmtDuration, fmtTime, latestLocalHour, pageData, parseLocal, STATUS_LABEL, toast, toLocalInput, timezone } from "./api.js";

const data = pageData();
const form = document.getElementById("filters");
const tbody = document.querySelector("#incidents tbody");
const table = document.getElementById("incidents");
const preview = document.getElementById("preview");
const summary = document.getElementById("summary");
const pageInfo = document.getElementById("page-info");
const bulk = document.getElementById("bulk");
const checkAll = document.getElementById("check-all");
const LIMIT = 50;
const GROUP_WINDOW = 600; // seconds between consecutive incidents of one group
const SHIFT_STARTS = [6, 14, 22]; // hours (site time) at which shifts start
let offset = 0;
let items = [];
let groups = [];
let total = 0;
let selectedId = null; // an incident id: the selected row is the one whose group holds it
let selectedIncident = null;
const checked = new Set(); // incident ids checked for a bulk action

const cameraSelect = document.getElementById("f-camera");
cameraSelect.append(el("option", { value: "" }, "any"));
for (const camera of data.cameras || []) cameraSelect.append(filterOption(camera.id, camera.name, camera.removed));
const ruleSelect = document.getElementById("f-rule");
for (const rule of data.rules || []) ruleSelect.append(filterOption(rule.id, rule.id, rule.removed));
const groupBox = form.elements.namedItem("group");

// -- time presets (in the site's time zone) --------------------------------------------------

function presetRange(preset, now = Date.now() / 1000) {
  if (preset === "hour") return [now - 3600, null];
  if (preset === "today") return [latestLocalHour(now, [0]), null];
  // Before the first start of the day the night shift began yesterday.
  if (preset === "shift") return [latestLocalHour(now, SHIFT_STARTS), null];
  return null;
}

let preset = "";
// A bound from the URL may have seconds the minute-wide input cannot show: it is kept exactly
// until the input is edited, so a reload never widens or narrows the view.
const exact = {};

function applyPreset(name) {
  const range = presetRange(name);
  if (!range) return;
  preset = name;
  form.elements.namedItem("since").value = toLocalInput(range[0]);
  form.elements.namedItem("until").value = range[1] === null ? "" : toLocalInput(range[1]);
  for (const button of document.querySelectorAll("#presets button")) button.setAttribute("aria-pressed", String(button.dataset.preset === name));
}

for (const button of document.querySelectorAll("#presets button")) {
  button.addEventListener("click", () => { applyPreset(button.dataset.preset); offset = 0; load(true); });
}
for (const name of ["since", "until"]) {
  form.elements.namedItem(name).addEventListener("change", () => {
    preset = "";
    for (const button of document.querySelectorAll("#presets button")) button.setAttribute("aria-pressed", "false");
  });
}

// -- filters from the URL: a bookmark or a reload shows the same view --------------------------

const params = new URLSearchParams(location.search);
for (const name of ["camera", "rule", "severity", "status"]) {
  const value = params.get(name);
  if (value === null) continue;
  const select = form.elements.namedItem(name);
  // A camera or rule the site no longer has (removed, renamed) still filters: its incidents are
  // stored and a bookmark asks for them. A value no option holds would leave the select empty,
  // list every incident and drop the parameter from the URL without a word.
  if (value && (name === "camera" || name === "rule") && ![...select.options].some((o) => o.value === value)) {
    select.append(filterOption(value, value, true));
  }
  select.value = value;
}
if (params.get("preset") && presetRange(params.get("preset"))) applyPreset(params.get("preset"));
else {
  for (const name of ["since", "until"]) {
    const value = parseFloat(params.get(name) || "");
    if (!Number.isNaN(value)) {
      form.elements.namedItem(name).value = toLocalInput(value);
      exact[name] = value;
    }
  }
}
groupBox.checked = params.get("group") !== "0";
offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
if (params.get("selected")) selectedId = params.get("selected");

function query() {
  const q = new URLSearchParams();
  for (const name of ["camera", "rule", "severity", "status"]) {
    const value = form.elements.namedItem(name).value;
    if (value) q.set(name, value);
  }
  if (preset) {
    // A preset is relative: recomputed at every load, so "last hour" stays the last hour.
    const [since] = presetRange(preset);
    form.elements.namedItem("since").value = toLocalInput(since);
    q.set("since", since.toFixed(0));
    return q;
  }
  for (const name of ["since", "until"]) {
    const input = form.elements.namedItem(name).value;
    const value = name in exact && input === toLocalInput(exact[name]) ? exact[name] : parseLocal(input);
    if (value !== null) q.set(name, value.toFixed(0));
  }
  return q;
}

// -- grouping ------------------------------------------------------------------------------

/** Newest-first incidents -> rows: same rule, camera and zone, starts within GROUP_WINDOW. */
function group(list) {
  if (!groupBox.checked) return list.map((incident) => [incident]);
  const rows = [];
  const open = new Map(); // key -> the group still accepting older incidents
  for (const incident of list) {
    const key = `${incident.rule_id}\u0000${incident.camera_id}\u0000${incident.zone_id ?? ""}`;
    const current = open.get(key);
    if (current && current[current.length - 1].started_at - incident.started_at <= GROUP_WINDOW) {
      current.push(incident);
    } else {
      const fresh = [incident];
      rows.push(fresh);
      open.set(key, fresh);
    }
  }
  return rows;
}

function statusCell(members) {
  const counts = {};
  for (const incident of members) counts[incident.status] = (counts[incident.status] || 0) + 1;
  const entries = Object.entries(counts);
  if (entries.length === 1) return el("span", { class: `status st-${entries[0][0]}` }, STATUS_LABEL[entries[0][0]]);
  return entries.map(([status, n]) => el("span", { class: `status st-${status}` }, `${n} ${STATUS_LABEL[status]}`));
}

/** What the Dur. column says: a review status is not an episode; "running" while it lasts. */
function durationCell(incident) {
  if (incident.ended_at === null || incident.ended_at === undefined) return el("span", { class: "running" }, "running");
  return fmtDuration(incident.duration);
}

function row(members, index) {
  const head = members[0];
  const ids = members.map((i) => i.id);
  const severity = ["critical", "high", "medium", "low"].find((s) => members.some((i) => i.severity === s)) || head.severity;
  const box = el("input", {
    type: "checkbox", class: "check", "aria-label": `Select ${members.length > 1 ? `${members.length} incidents` : "incident"} ${head.rule_id} on ${head.camera_id}`,
    onclick: (event) => event.stopPropagation(),
    onchange: (event) => { for (const id of ids) event.target.checked ? checked.add(id) : checked.delete(id); updateBulk(); },
  });
  box.checked = ids.every((id) => checked.has(id));
  const count = members.length > 1
    ? el("span", { class: "count", title: `${members.length} incidents of this rule, camera and zone within ${GROUP_WINDOW / 60} min` }, `×${members.length}`)
    : null;
  const oldest = members[members.length - 1];
  return el("tr", {
    class: `sev-${severity} st-${head.status}`,
    dataset: { id: head.id, ids: ids.join(" "), index: String(index), count: String(members.length) },
    onclick: () => selectRow(index, false),
    ondblclick: () => { location.href = `/incidents/${head.id}`; },
  },
  el("td", {}, box),
  el("td", { class: "nowrap" }, fmtTime(head.started_at), members.length > 1 ? el("div", { class: "muted small" }, `from ${fmtTime(oldest.started_at, true)}`) : null),
  el("td", {}, head.camera_id),
  el("td", {}, head.rule_id, " ", count),
  el("td", {}, el("span", { class: `sev sev-${severity}` }, severity)),
  el("td", {}, statusCell(members)),
  el("td", { class: "num" }, durationCell(head)),
  el("td", { class: "num" }, Math.max(...members.map((i) => i.peak_confidence)).toFixed(2)),
  el("td", { class: "message" }, head.message));
}

function render() {
  groups = group(items);
  tbody.replaceChildren(...groups.map(row));
  if (!groups.length) tbody.append(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "No incidents match.")));
  const shownIds = items.map((i) => i.id);
  checkAll.checked = shownIds.length > 0 && shownIds.every((id) => checked.has(id));
  showSelection(false);
  updateBulk();
}

// -- loading -------------------------------------------------------------------------------

let loading = null;
/** Load the page; `pick` selects the first row when no incident is selected (first load, a new
 *  filter), never on the refreshes that new incidents cause. `follow` (a reload of the page
 *  shown after a decision, anyone's) keeps the selected row on the page, see followSelection. */
async function load(pick = false, follow = false) {
  const q = query();
  const started = performance.now();
  q.set("limit", String(LIMIT));
  q.set("offset", String(offset));
  const at = follow && offset > 0 ? items.findIndex((i) => i.id === selectedId) : -1;
  const request = api(`/api/v1/incidents?${q}`);
  loading = request;
  const page = await attempt(() => request);
  if (!page || loading !== request) return; // a newer load is under way: it decides the view
  if (at >= 0 && !page.items.some((i) => i.id === selectedId)) {
    const moved = await followSelection(q, at);
    if (loading !== request) return;
    if (moved !== null) { offset = moved; return load(pick); }
  }
  items = page.items;
  total = page.total;
  if (!items.length && offset > 0 && total > 0) {
    // Every row of this page was decided out of a filtered list (the last page of "open"):
    // show the last page there is now instead of an empty one.
    offset = Math.floor((total - 1) / LIMIT) * LIMIT;
    return load(pick);
  }
  if (pick && !items.some((i) => i.id === selectedId)) { selectedId = items[0]?.id ?? null; selectedIncident = items[0] ?? null; }
  render();
  const ms = Math.round(performance.now() - started);
  summary.textContent = `${total} incident${total === 1 ? "" : "s"} in ${groups.length} row${groups.length === 1 ? "" : "s"} · ${ms} ms`;
  pageInfo.textContent = total ? `${offset + 1}–${offset + items.length} of ${total}` : "";
  document.getElementById("prev").disabled = offset === 0;
  document.getElementById("next").disabled = !page.has_more;
  const shown = new URLSearchParams(q);
  shown.delete("limit");
  if (!offset) shown.delete("offset");
  if (preset) { shown.delete("since"); shown.set("preset", preset); }
  if (!groupBox.checked) shown.set("group", "0");
  history.replaceState(null, "", `${location.pathname}${shown.toString() ? `?${shown}` : ""}`);
  table.dataset.loaded = String(Date.now());
}

/** The offset that puts the selected incident back at row `at` after a reload lost it: pages
 *  are offsets into the set as it is now, and a decision on an earlier page (another operator's)
 *  moves every row after it up, the selected one past the page's top. The page then follows it,
 *  so the operator keeps the rows looked at (a/r/f had nothing to act on, `j` went to the new
 *  first row and skipped the rows between). Found in the rows before the page (as many as one
 *  request brings); null when it is not there (it left the set: decided, or moved further). */
async function followSelection(q, at) {
  const start = Math.max(0, offset - 500);
  const before = new URLSearchParams(q);
  before.set("offset", String(start));
  before.set("limit", String(offset - start));
  before.set("count", "false");
  const page = await attempt(() => api(`/api/v1/incidents?${before}`));
  const index = page ? page.items.findIndex((i) => i.id === selectedId) : -1;
  return index < 0 ? null : Math.max(0, start + index - at);
}

// -- selection (by incident id) --------------------------------------------------------------

/** Whether incident a comes before b in the list's order (newest first, then by id). */
function precedes(a, b) {
  return a.started_at > b.started_at || (a.started_at === b.started_at && a.id < b.id);
}

function selectedIndex() {
  if (selectedId === null) return -1;
  return groups.findIndex((members) => members.some((i) => i.id === selectedId));
}

function selectRow(index, scroll = true) {
  const members = groups[index];
  if (!members) return;
  // Keep the incident already selected when it is in this row: a new member joining the group
  // must not move the selection to another incident.
  if (!members.some((i) => i.id === selectedId)) selectedId = members[0].id;
  showSelection(scroll);
}

function showSelection(scroll) {
  const index = selectedIndex();
  for (const tr of tbody.querySelectorAll("tr[data-index]")) {
    const on = tr.dataset.index === String(index);
    tr.classList.toggle("selected", on);
    tr.setAttribute("aria-selected", String(on));
  }
  table.dataset.selected = selectedId ?? "";
  if (index >= 0) {
    selectedIncident = groups[index].find((i) => i.id === selectedId);
    if (scroll) tbody.querySelector(`tr[data-index="${index}"]`)?.scrollIntoView({ block: "nearest" });
  }
  renderPreview(index >= 0 ? groups[index] : null);
}

function renderPreview(members) {
  const incident = selectedIncident;
  if (!incident) {
    preview.replaceChildren(el("h2", {}, "Preview"), el("p", { class: "muted" }, "Nothing selected. ",
      el("kbd", {}, "j"), "/", el("kbd", {}, "k"), " move, ", el("kbd", {}, "x"), " check, ", el("kbd", {}, "Enter"), " opens, ",
      el("kbd", {}, "a"), " acknowledge, ", el("kbd", {}, "r"), " resolve, ", el("kbd", {}, "f"), " false positive, ",
      el("kbd", {}, "n"), "/", el("kbd", {}, "p"), " pages."));
    return;
  }
  const n = members ? members.length : 1;
  const actions = can("operator") ? el("div", { class: "actions" },
    ...[["acknowledged", "Acknowledge", "a"], ["resolved", "Resolve", "r"], ["false_positive", "False positive", "f"]]
      .map(([status, label, key]) => el("button", { type: "button", dataset: { status }, onclick: () => decide(status) },
        n > 1 ? `${label} all ${n}` : label, " ", el("kbd", {}, key)))) : null;
  preview.replaceChildren(...[
    el("h2", {}, n > 1 ? `Group of ${n}` : "Preview"),
    el("p", { class: "lead" }, incident.message),
    members ? null : el("p", { class: "warn-text" }, "This incident is no longer on the page shown; it stays selected."),
    incident.has_still ? el("img", { src: `/api/v1/incidents/${incident.id}/still`, alt: `Evidence still of ${incident.camera_id}, ${fmtTime(incident.started_at)}`, class: "still" }) : el("p", { class: "muted" }, "No still."),
    el("dl", { class: "facts-list" },
      el("dt", {}, "Camera"), el("dd", {}, incident.camera_id),
      el("dt", {}, "Rule"), el("dd", {}, `${incident.rule_id} (${incident.rule_kind})`),
      el("dt", {}, "Zone"), el("dd", {}, incident.zone_id || "—"),
      el("dt", {}, "Started"), el("dd", {}, fmtTime(incident.started_at)),
      el("dt", {}, "Episode"), el("dd", {}, incident.ended_at === null ? "running" : `ended after ${fmtDuration(incident.duration)}`),
      el("dt", {}, "Review"), el("dd", {}, STATUS_LABEL[incident.status]),
      n > 1 ? el("dt", {}, "Group") : null,
      n > 1 ? el("dd", {}, `${n} incidents, ${fmtTime(members[n - 1].started_at, true)}–${fmtTime(members[0].started_at, true)}`) : null),
    actions,
    el("p", {}, el("a", { href: `/incidents/${incident.id}` }, "Open incident ›"))].filter(Boolean));
}

// -- decisions -------------------------------------------------------------------------------

async function transition(ids, status) {
  const result = await attempt(() => api("/api/v1/incidents/transitions", { method: "POST", body: { ids, status } }));
  if (!result) return;
  const changed = new Map(result.changed.map((i) => [i.id, i]));
  items = items.map((i) => changed.get(i.id) || i);
  if (selectedIncident && changed.has(selectedIncident.id)) selectedIncident = changed.get(selectedIncident.id);
  render();
  const label = STATUS_LABEL[status];
  if (result.changed.length) toast(`${result.changed.length} incident${result.changed.length === 1 ? "" : "s"}: ${label}`, "ok");
  if (result.failed.length) toast(`${result.failed.length} not changed: ${result.failed[0].message}`, "error");
  // Then reload the page shown: with a status filter the decided incidents leave the filtered
  // set and the ones after them move up into this page. Patched in place only, the page kept
  // the decided rows and `n` (offset + LIMIT) skipped the LIMIT incidents that had moved up.
  const at = selectedIndex();
  await load(false, true);
  // A decided row that left the filtered page leaves the selection on the row now in its
  // place (the next one), as working down a list expects, not on nothing (`j` went to the top).
  if (selectedIndex() < 0 && at >= 0 && groups.length) selectRow(Math.min(at, groups.length - 1), false);
  table.dataset.decided = String(Date.now());
}

/** A decision from the keyboard or the preview: on the checked incidents if any, else the row;
 *  a selected incident no longer on the page (the preview shows it) is decided alone. */
function decide(status) {
  // The a/r/f keys: a viewer cannot change incidents (the server answers 403); the page says so.
  if (!can("operator")) return;
  if (checked.size) { bulkDecide(status); return; }
  const index = selectedIndex();
  if (index >= 0) transition(groups[index].map((i) => i.id), status);
  else if (selectedIncident) transition([selectedIncident.id], status);
}

function bulkDecide(status) {
  const ids = [...checked];
  if (!ids.length) return;
  transition(ids, status).then(() => { checked.clear(); render(); });
}

function updateBulk() {
  bulk.hidden = checked.size === 0 || !can("operator");
  document.getElementById("bulk-count").textContent = `${checked.size} checked`;
}

for (const button of bulk.querySelectorAll("button[data-status]")) button.addEventListener("click", () => bulkDecide(button.dataset.status));
document.getElementById("bulk-clear").addEventListener("click", () => { checked.clear(); render(); });
checkAll.addEventListener("change", () => {
  for (const incident of items) checkAll.checked ? checked.add(incident.id) : checked.delete(incident.id);
  render();
});

function toggleCheck() {
  const index = selectedIndex();
  if (index < 0) return;
  const ids = groups[index].map((i) => i.id);
  const on = !ids.every((id) => checked.has(id));
  for (const id of ids) on ? checked.add(id) : checked.delete(id);
  render();
}

// -- events ----------------------------------------------------------------------------------

form.addEventListener("submit", (event) => { event.preventDefault(); offset = 0; load(true); });
form.addEventListener("reset", () => {
  preset = "";
  for (const name of Object.keys(exact)) delete exact[name];
  setTimeout(() => { groupBox.checked = true; offset = 0; load(); }, 0);
});
groupBox.addEventListener("change", () => render());
document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - LIMIT); load(); });
document.getElementById("next").addEventListener("click", () => { offset += LIMIT; load(); });

function move(step) {
  const index = selectedIndex();
  let next;
  if (index >= 0) next = Math.min(groups.length - 1, Math.max(0, index + step));
  else if (!selectedIncident) next = 0;
  else {
    // The selected incident is not on the page (the preview shows it): go to the incident after
    // (before) it in the list's order, not to the top, which skipped the rows between.
    const shown = step > 0 ? items.find((i) => precedes(selectedIncident, i)) : items.filter((i) => precedes(i, selectedIncident)).pop();
    next = shown ? groups.findIndex((members) => members.includes(shown)) : -1;
  }
  const members = groups[next];
  if (members) { selectedId = members[0].id; showSelection(true); }
}

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea, button") || event.ctrlKey || event.metaKey || event.altKey) return;
  const keys = {
    j: () => move(1),
    ArrowDown: () => move(1),
    k: () => move(-1),
    ArrowUp: () => move(-1),
    x: toggleCheck,
    Enter: () => { if (selectedId) location.href = `/incidents/${selectedId}`; },
    a: () => decide("acknowledged"),
    r: () => decide("resolved"),
    f: () => decide("false_positive"),
    n: () => { if (!document.getElementById("next").disabled) { offset += LIMIT; load(); } },
    p: () => { if (offset) { offset = Math.max(0, offset - LIMIT); load(); } },
  };
  const action = keys[event.key];
  if (action) { event.preventDefault(); action(); }
});

// New incidents reload the first page; a review decision (anyone's) or a gap in the feed
// (shell.js) reloads the page shown, whichever it is. The selection and the checks are ids, so
// they hold. Paging is by offset: a decision on an earlier page takes incidents out of a
// status-filtered set and the rest move up, so a later page left as it was made `n` skip as
// many incidents as left; reloaded, the page shows what is at its offset now (the rows that
// moved up onto the page before are the ones it showed at its top) or, where that took the
// selected row off the page, what is around it (the page moves back with it). New incidents move rows
// down instead (`n` may show one again, never skips one): past the first page they do not
// reload it, so a flood does not shift the page an operator is working through.
let refresh = null;
function refreshSoon() {
  clearTimeout(refresh);
  refresh = setTimeout(() => load(false, true), 1000);
}
document.addEventListener("safewatch:incident", (event) => {
  if (offset === 0 || event.detail?.kind === "status") refreshSoon();
});
document.addEventListener("safewatch:resync", refreshSoon);

document.getElementById("tz").textContent = timezone;
load(true).then(() => table.focus({ preventScroll: true }));
if (!can("operator")) toast("Viewer: you can review but not change incidents.");
