// One incident: still, clip (range requests), facts, timeline, actions and notes.
import { api, attempt, can, el, fmtDuration, fmtTime, pageData, STATUS_LABEL } from "./api.js";

const { id } = pageData();
const facts = document.getElementById("facts");
const timeline = document.getElementById("timeline");
const still = document.getElementById("still");
const clip = document.getElementById("clip");
const actions = document.getElementById("actions");
const badge = document.getElementById("status-badge");

function render(detail) {
  const incident = detail.incident;
  document.getElementById("title").textContent = incident.message;
  badge.replaceChildren("Review: ", el("span", { class: `status st-${incident.status}`, id: "status" }, STATUS_LABEL[incident.status]),
    ...(incident.ended_at ? [] : [el("span", { class: "running" }, " · episode running")]));
  facts.replaceChildren(
    ...[["Camera", incident.camera_id], ["Rule", `${incident.rule_id} (${incident.rule_kind})`],
      ["Severity", incident.severity], ["Started", fmtTime(incident.started_at)],
      ["Episode", incident.ended_at ? `ended ${fmtTime(incident.ended_at)} after ${fmtDuration(incident.duration)}` : "running (the violation goes on)"],
      ["Review", STATUS_LABEL[incident.status]], ["Peak confidence", incident.peak_confidence.toFixed(2)],
      // Negative ids are the pipeline's "no single track" placeholder (area rules): not shown.
      ["Tracks", incident.track_ids.filter((t) => t >= 0).map((t) => `#${t}`).join(", ") || "— (area rule)"],
      ["Zone", incident.zone_id || "—"],
      ["Id", incident.id]]
      .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  if (incident.has_still && !still.src) still.src = `/api/v1/incidents/${incident.id}/still`;
  still.hidden = !incident.has_still;
  if (incident.has_clip && !clip.src) clip.src = `/api/v1/incidents/${incident.id}/clip`;
  clip.hidden = !incident.has_clip;
  for (const button of actions.querySelectorAll("button")) {
    button.disabled = !can("operator") || !detail.allowed.includes(button.dataset.status);
  }
  timeline.replaceChildren(...detail.timeline.map((event) => el("li", { class: `tl-${event.kind.replace(/\./g, "-")}` },
    el("time", {}, fmtTime(event.at)), " ", el("span", {}, event.summary))));
}

async function load() {
  const detail = await attempt(() => api(`/api/v1/incidents/${id}`));
  if (detail) render(detail);
}

async function transition(status) {
  const note = document.getElementById("note").value.trim() || null;
  const detail = await attempt(() => api(`/api/v1/incidents/${id}/transition`, { method: "POST", body: { status, note } }),
    `Incident ${STATUS_LABEL[status]}`);
  if (detail) { document.getElementById("note").value = ""; render(detail); }
}

actions.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-status]");
  if (button && !button.disabled) transition(button.dataset.status);
});
document.getElementById("note-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = document.getElementById("note").value.trim();
  if (!text) return;
  const done = await attempt(() => api(`/api/v1/incidents/${id}/notes`, { method: "POST", body: { text } }), "Note added");
  if (done) { document.getElementById("note").value = ""; load(); }
});
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey) return;
  const map = { a: "acknowledged", r: "resolved", f: "false_positive" };
  if (map[event.key]) {
    const button = actions.querySelector(`button[data-status="${map[event.key]}"]`);
    if (button && !button.disabled) transition(map[event.key]);
  } else if (event.key === "Escape" || event.key === "Backspace") {
    history.length > 1 ? history.back() : (location.href = "/incidents");
  }
});
if (!can("operator")) document.getElementById("note-form").hidden = true;
document.addEventListener("safewatch:incident", ({ detail }) => { if (detail.incident.id === id) load(); });
load();

// The camera's continuous recording from 2 minutes before to 2 minutes after the incident. The
// segments are the camera's own footage (heads not hidden): listed for everyone, played by admins
// only, and every play is logged.
async function recording() {
  const box = document.getElementById("recording");
  const player = document.getElementById("recording-player");
  const found = await attempt(() => api(`/api/v1/incidents/${id}/recording`));
  if (!found) { box.replaceChildren(); return; }
  box.dataset.segments = String(found.segments.length);
  if (!found.segments.length) {
    box.replaceChildren(el("p", { class: "muted" }, `No recording of ${found.camera_id} from ${fmtTime(found.since, true)} to ${fmtTime(found.until, true)}.`));
    return;
  }
  const items = found.segments.map((segment) => el("li", {},
    can("admin")
      ? el("button", { type: "button", class: "link", onclick: () => { player.src = segment.url; player.hidden = false; player.play?.().catch(() => {}); } },
        `${fmtTime(segment.start, true)}–${fmtTime(segment.end, true)}`)
      : `${fmtTime(segment.start, true)}–${fmtTime(segment.end, true)}`,
    el("span", { class: "muted" }, ` ${(segment.size / 1e6).toFixed(1)} MB`)));
  box.replaceChildren(el("ol", { class: "plain" }, items),
    el("p", { class: "muted small" }, can("admin")
      ? "The camera's own footage: heads are not hidden; playing it is recorded in the audit log."
      : "The camera's own footage (heads not hidden): an admin can play it."));
}
recording();
