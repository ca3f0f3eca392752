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

// Only the answer to the newest request is shown: on a slow server the page's first load could
// answer after a review action's own answer and put the old status back.
let newest = 0;

async function load() {
  const mine = ++newest;
  const detail = await attempt(() => api(`/api/v1/incidents/${id}`));
  if (detail && mine === newest) render(detail);
}

async function transition(status) {
  const mine = ++newest;
  const note = document.getElementById("note").value.trim() || null;
  const detail = await attempt(() => api(`/api/v1/incidents/${id}/transition`, { method: "POST", body: { status, note } }),
    `Incident ${STATUS_LABEL[status]}`);
  if (detail) {
    document.getElementById("note").value = "";
    if (mine === newest) render(detail);
    else load();  // a newer load went out meanwhile and may predate this change: read it again
  }
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
document.addEventListener("safewatch:resync", () => load());  // a gap in the feed (shell.js)
load();

// The camera's continuous recording around the incident, as one timeline across its segments.
// The segments are the camera's own footage (heads not hidden): listed for everyone, played and
// exported by admins only, and every play and export is logged. Nothing loads until an admin
// seeks or presses a segment, so opening the page reveals nothing.
const recordingBox = document.getElementById("recording");
const recordingPlayer = document.getElementById("recording-player");
let scrubberListeners = null;
let recordingSpan = 120;

/** The segment holding wall time `t`, or the first one after it (a gap: an outage). */
function segmentAt(segments, t) {
  return segments.find((s) => s.start <= t && t < s.end) || segments.find((s) => s.start > t) || null;
}

function scrubber(found) {
  const segments = found.segments;
  const incident = found.incident_at;
  const slider = el("input", { type: "range", id: "scrub", min: String(found.since), max: String(found.until), step: "0.1", value: String(Math.max(found.since, incident - 5)), "aria-label": "Recording time" });
  const label = el("output", { id: "scrub-time", for: "scrub" }, fmtTime(+slider.value, true));
  let current = null; // the segment in the player
  let dragging = false;
  let loading = false; // a new segment's file is loading: its time 0 is not the moment shown
  // one scrubber listens to the shared player at a time (the camera or span may change)
  scrubberListeners?.abort();
  scrubberListeners = new AbortController();
  const listen = { signal: scrubberListeners.signal };
  const show = (t) => { slider.value = String(t); label.textContent = `${fmtTime(t, true)}${Math.abs(t - incident) < 1 ? " · incident" : ` · ${t < incident ? "-" : "+"}${fmtDuration(Math.abs(t - incident))} from the incident`}`; };
  const seek = (t, play = false) => {
    const segment = segmentAt(segments, t);
    if (!segment) return;
    const at = Math.max(0, t - segment.start);
    recordingPlayer.hidden = false;
    if (current !== segment) {
      current = segment;
      loading = true;
      recordingBox.dataset.segment = String(segments.indexOf(segment));
      recordingPlayer.src = segment.url;
      recordingPlayer.addEventListener("loadedmetadata", () => {
        recordingPlayer.currentTime = at;
        loading = false;
        if (play) recordingPlayer.play().catch(() => {});
      }, { once: true, ...listen });
    } else {
      recordingPlayer.currentTime = at;
      if (play) recordingPlayer.play().catch(() => {});
    }
    show(segment.start + at);
  };
  slider.addEventListener("input", () => { dragging = true; show(+slider.value); });
  slider.addEventListener("change", () => { dragging = false; seek(+slider.value, !recordingPlayer.paused); });
  recordingPlayer.addEventListener("timeupdate", () => {
    if (current && !dragging && !loading) show(current.start + recordingPlayer.currentTime);
  }, listen);
  // Continuous playback: at the end of a segment the next one follows (after an outage, its start).
  recordingPlayer.addEventListener("ended", () => {
    const next = current && segments[segments.indexOf(current) + 1];
    if (next) seek(next.start, true);
  }, listen);
  // positions through the CSSOM: the Content-Security-Policy forbids style attributes
  const place = (node, from, to) => {
    const whole = found.until - found.since;
    node.style.left = `${(100 * (Math.max(from, found.since) - found.since)) / whole}%`;
    node.style.width = `${(100 * Math.max(0, Math.min(to, found.until) - Math.max(from, found.since))) / whole}%`;
    return node;
  };
  const marks = el("div", { class: "scrub-marks", "aria-hidden": "true" },
    ...segments.map((s) => place(el("span", { class: "seg" }), s.start, s.end)),
    place(el("span", { class: "mark" }), incident, incident));
  const from = Math.max(found.since, segments[0].start);
  const to = Math.min(found.until, segments[segments.length - 1].end);
  const exportLink = el("a", { id: "export-range", class: "button", href: `/api/v1/recordings/${encodeURIComponent(found.camera_id)}/export?since=${from.toFixed(3)}&until=${to.toFixed(3)}`, download: "" }, "Export this range (MP4)");
  recordingBox.seek = seek;
  return el("div", { class: "scrubber" }, el("div", { class: "scrub-track" }, marks, slider), label, " ", exportLink);
}

// The other cameras at the same moment: the timeline can show any camera's recording over the
// same span, seeking to the moment the player was at.
let recordingCamera = null; // null: the incident's camera
let cameraList = null;

async function recording(at = null) {
  const found = await attempt(() => api(`/api/v1/incidents/${id}/recording?before=${recordingSpan}&after=${recordingSpan}`));
  if (!found) { recordingBox.replaceChildren(); return; }
  const own = found.camera_id;
  let shown = found;
  if (recordingCamera && recordingCamera !== own) {
    const other = await attempt(() => api(`/api/v1/recordings/${encodeURIComponent(recordingCamera)}?since=${found.since}&until=${found.until}`));
    if (other) shown = { ...found, camera_id: other.camera_id, segments: other.segments };
  }
  shown.incident_at = found.incident_started;
  const span = el("select", { id: "recording-span", "aria-label": "Footage around the incident" },
    ...[[120, "±2 min"], [600, "±10 min"], [1800, "±30 min"]].map(([v, text]) => el("option", { value: String(v), selected: v === recordingSpan }, text)));
  span.addEventListener("change", () => { recordingSpan = +span.value; recording(); });
  const admin = can("admin");
  if (admin && cameraList === null) {
    cameraList = (await attempt(() => api("/api/v1/cameras"))) || [];
  }
  // A camera removed from the site since the incident is in no list of the site's cameras, yet
  // its footage may still be on disk: it gets an option of its own (without one the picker
  // showed the site's first camera as selected while the player had the incident's).
  const choices = !admin || cameraList.some((c) => c.id === own)
    ? cameraList
    : [{ id: own, name: own, removed: true }, ...cameraList];
  const cameraPick = admin && choices.length > 1
    ? el("select", { id: "recording-camera", "aria-label": "Camera" },
      ...choices.map((c) => el("option", { value: c.id, selected: c.id === shown.camera_id },
        c.id === own ? `${c.name} (incident${c.removed ? ", not in the site now" : ""})` : c.name)))
    : null;
  cameraPick?.addEventListener("change", () => {
    const now = document.getElementById("scrub");
    recordingCamera = cameraPick.value;
    recording(now ? +now.value : null);
  });
  const head = el("p", { class: "muted small" }, span, " ", cameraPick, ` ${shown.camera_id}, ${fmtTime(found.since, true)} to ${fmtTime(found.until, true)}`);
  if (!shown.segments.length) {
    recordingBox.replaceChildren(head, el("p", { class: "muted" }, `No recording of ${shown.camera_id} in this span.`));
    Object.assign(recordingBox.dataset, { segments: "0", camera: shown.camera_id });
    return;
  }
  const items = shown.segments.map((segment) => el("li", {},
    admin
      ? el("button", { type: "button", class: "link", onclick: () => recordingBox.seek(segment.start, true) },
        `${fmtTime(segment.start, true)}–${fmtTime(segment.end, true)}`)
      : `${fmtTime(segment.start, true)}–${fmtTime(segment.end, true)}`,
    el("span", { class: "muted" }, ` ${(segment.size / 1e6).toFixed(1)} MB`)));
  recordingBox.replaceChildren(head, ...(admin ? [scrubber(shown)] : []), el("ol", { class: "plain" }, items),
    el("p", { class: "muted small" }, admin
      ? "The camera's own footage: heads are not hidden; playing or exporting it is recorded in the audit log."
      : "The camera's own footage (heads not hidden): an admin can play it."));
  // set once drawn: tests (and anything else) wait for it
  Object.assign(recordingBox.dataset, { segments: String(shown.segments.length), camera: shown.camera_id });
  if (admin && at !== null) recordingBox.seek(at, false);
}
recording();
