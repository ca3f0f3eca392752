// "Test this change" (Rules and Zones pages): backtest the page's unsaved edit against the rules
// in force on footage the server may read (POST /api/v1/backtests), follow the job's progress,
// and list per rule the incidents the change would remove, add or move, with their stills. The
// page says what its edit is with a "safewatch:backtest-source" event (detail.files: an async
// function returning {file name: edited text}; detail.camera, optional: a function returning the
// camera the edit is drawn on, preselected as the footage's camera); the Rules page's editor is
// one such source.
import { api, can, el, fmtDuration } from "./api.js";

const section = document.getElementById("backtest");
const toggle = document.getElementById("test-change");
const form = document.getElementById("backtest-form");
const cameraSelect = document.getElementById("bt-camera");
const progress = document.getElementById("bt-progress");
const stateLine = document.getElementById("bt-state");
const resultBox = document.getElementById("bt-result");
let source = null;
let sourceCamera = null;

const CHANGE_LABEL = {
  only_baseline: "would no longer be raised",
  only_proposal: "would be raised (new)",
  changed: "would start or end at another time",
};

/** The camera the page's edit is on, selected (a zone of the dock tested as the first camera's
 * footage judged nothing it draws); the user may still pick another. */
function preselect() {
  const camera = sourceCamera?.();
  if (camera && [...cameraSelect.options].some((o) => o.value === camera)) cameraSelect.value = camera;
}

document.addEventListener("safewatch:backtest-source", (event) => {
  source = event.detail.files;
  sourceCamera = event.detail.camera || null;
  preselect();
});
document.addEventListener("safewatch:rules-ready", (event) => {
  const { editor } = event.detail;
  source = async () => ({ [editor.file()]: editor.getText() });
});

if (!can("operator")) toggle.disabled = true;
toggle.addEventListener("click", async () => {
  section.hidden = !section.hidden;
  toggle.setAttribute("aria-expanded", String(!section.hidden));
  if (!section.hidden && !cameraSelect.options.length) {
    const cameras = await api("/api/v1/cameras").catch(() => []);
    for (const camera of cameras) cameraSelect.append(el("option", { value: camera.id }, camera.name || camera.id));
    preselect();
  }
  if (!section.hidden) document.getElementById("bt-path").focus();
});

/** A relative file name (evidence/camera/...) as a URL path: each segment encoded, the slashes
 * kept, so a "#", "?" or "%" in a name is part of the name, not the URL's fragment or query. */
const pathOf = (relative) => relative.split("/").map(encodeURIComponent).join("/");

function side(jobId, incident) {
  if (!incident) return el("td", {}, "—");
  const span = `${incident.start_offset_s.toFixed(1)}–${incident.end_offset_s === null ? "…" : incident.end_offset_s.toFixed(1)} s`;
  return el("td", {},
    el("div", {}, `${span} (${incident.duration_s === null ? "open" : fmtDuration(incident.duration_s)}), tracks ${incident.track_ids.join(", ")}`),
    incident.still ? el("img", { src: `/api/v1/backtests/${encodeURIComponent(jobId)}/files/${pathOf(incident.still)}`, alt: `Still of ${incident.rule} at ${incident.start_offset_s.toFixed(1)} s`, loading: "lazy", class: "bt-still" }) : null);
}

function render(jobId, doc) {
  const rows = doc.summary.proposal || [];
  const summary = el("table", { class: "table dense" },
    el("caption", {}, "Incidents per rule, the change against the rules in force"),
    el("thead", {}, el("tr", {}, ["Rule", "Unchanged", "Changed", "Removed", "Added"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, el("td", {}, r.rule), el("td", {}, r.unchanged), el("td", {}, r.changed),
      el("td", {}, r.only_baseline), el("td", {}, r.only_proposal)))));
  const differences = doc.differences.proposal || [];
  const list = differences.length
    ? el("table", { class: "table dense" },
      el("caption", {}, "What would change"),
      el("thead", {}, el("tr", {}, ["Change", "Rule", "Rules in force", "With this change"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, differences.map((d) => el("tr", { class: `bt-${d.change}` },
        el("td", {}, CHANGE_LABEL[d.change] || d.change), el("td", {}, d.rule), side(jobId, d.baseline), side(jobId, d.proposal)))))
    : el("p", {}, "No incident would change.");
  // A row per rule set whenever operators reviewed incidents of this camera and time, even when
  // precision and recall are both undefined: a change that avoids every reviewed false alarm and
  // raises no reviewed incident is the best news a test can bring, and used to show nothing.
  const count = (s) => s.real_raised.length + s.real_missed.length + s.false_raised.length + s.false_avoided.length;
  const scored = Object.entries(doc.reviewed || {}).filter(([, s]) => count(s) > 0);
  const figure = (value) => (value === null ? "–" : value.toFixed(2));
  const reviewed = scored.length
    ? el("ul", { class: "bt-scores" }, scored.map(([name, s]) => el("li", {},
      `${name === "baseline" ? "Rules in force" : "With this change"}: precision ${figure(s.precision)}, recall ${figure(s.recall)} against ${count(s)} reviewed incidents (${s.real_raised.length} real raised, ${s.real_missed.length} missed, ${s.false_raised.length} false raised, ${s.false_avoided.length} false avoided)`)))
    : el("p", { class: "muted" }, "No reviewed incidents of this camera over this footage to score against.");
  // What the footage lacked (dated 1970, partly decoded, untimed frames, gaps): the same lines
  // the console prints after its table.
  const warnings = (doc.warnings || []).map((line) => el("p", { class: "warn-text bt-warning" }, line));
  resultBox.replaceChildren(summary, list, reviewed, ...warnings);
}

async function follow(jobId) {
  for (;;) {
    const job = await api(`/api/v1/audit-jobs/${jobId}`);
    progress.value = job.progress;
    stateLine.textContent = job.state === "running" ? `${job.frames_done}${job.frames_total ? ` / ${job.frames_total}` : ""} frames` : job.message || job.state;
    if (job.state === "done") return job;
    if (job.state === "failed") throw new Error(job.message || "the test failed");
    if (job.state === "cancelled") throw new Error("the test was cancelled");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!source) return;
  const run = document.getElementById("bt-run");
  run.disabled = true;
  progress.hidden = false;
  progress.value = 0;
  resultBox.replaceChildren();
  stateLine.textContent = "queued";
  try {
    const files = await source();
    const upload = document.getElementById("bt-file").files[0];
    const path = document.getElementById("bt-path").value.trim();
    const start = document.getElementById("bt-start").value || null; // site time
    if (!upload && !path) throw new Error("Name a video on the server or choose one to upload");
    let job;
    if (upload) {
      const form = new FormData();
      form.append("video", upload);
      form.append("files", JSON.stringify(files));
      if (cameraSelect.value) form.append("camera", cameraSelect.value);
      if (start) form.append("start", start);
      stateLine.textContent = "uploading";
      job = await api("/api/v1/backtests/upload", { method: "POST", body: form });
    } else {
      job = await api("/api/v1/backtests", { method: "POST", body: { path, camera: cameraSelect.value || null, files, start } });
    }
    await follow(job.id);
    render(job.id, await api(`/api/v1/backtests/${job.id}/result`));
    stateLine.textContent = "done";
  } catch (error) {
    stateLine.textContent = "";
    const details = Array.isArray(error.details) ? error.details.map((e) => `${(e.file || "").split("/").pop()}${e.line ? `:${e.line}` : ""}: ${e.message}`) : [];
    resultBox.replaceChildren(el("p", { class: "error", role: "alert" }, error.message), details.length ? el("ul", {}, details.map((d) => el("li", {}, d))) : "");
  } finally {
    run.disabled = false;
    progress.hidden = true;
  }
});
