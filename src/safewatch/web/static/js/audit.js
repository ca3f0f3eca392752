// Audit: run the pipeline on archived footage (upload or server path), follow the progress,
// browse the incidents each job found.
import { api, attempt, can, el, fmtDuration, fmtTime, pageData, toast } from "./api.js";

const data = pageData();
const camera = document.getElementById("camera");
for (const c of data.cameras || []) camera.append(el("option", { value: c.id }, c.name));
const results = document.getElementById("job-results");
let timer = null;

async function jobs() {
  const list = await attempt(() => api("/api/v1/audit-jobs"));
  if (!list) return;
  document.querySelector("#jobs tbody").replaceChildren(...list.map((j) => el("tr", { dataset: { id: j.id, state: j.state } },
    el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); show(j); } }, j.id)),
    el("td", {}, j.video), el("td", {}, j.camera), el("td", {}, fmtTime(j.submitted_at)), el("td", {}, j.submitted_by),
    el("td", {}, el("progress", { max: "1", value: String(j.progress) }), ` ${Math.round(j.progress * 100)}%`),
    el("td", { class: "num" }, String(j.incidents)), el("td", { title: j.message }, j.state,
      can("operator") && ["receiving", "queued", "running"].includes(j.state)
        ? el("button", { type: "button", class: "link", onclick: () => cancel(j) }, " cancel") : ""))));
  if (!list.length) {
    document.querySelector("#jobs tbody").append(el("tr", {}, el("td", { colspan: "8", class: "muted" },
      "No audit jobs yet.")));
  }
  clearTimeout(timer);
  if (list.some((j) => ["receiving", "queued", "running"].includes(j.state))) timer = setTimeout(jobs, 1000);
}

async function cancel(job) {
  // Any API node cancels; under serve --cluster the analyzer running it stops at its next frame.
  const done = await attempt(() => api(`/api/v1/audit-jobs/${job.id}/cancel`, { method: "POST" }), `Cancelling job ${job.id}`);
  if (done) jobs();
}

async function show(job) {
  const incidents = await attempt(() => api(`/api/v1/audit-jobs/${job.id}/incidents`));
  if (!incidents) return;
  results.replaceChildren(el("h2", {}, `Job ${job.id}: ${job.video} — ${job.message}`),
    el("table", { class: "table dense" },
      el("thead", {}, el("tr", {}, ...["Started", "Rule", "Sev.", "Dur.", "Message", "Evidence"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...incidents.map((i) => el("tr", {},
        el("td", {}, fmtTime(i.started_at)), el("td", {}, i.rule_id), el("td", {}, i.severity), el("td", {}, fmtDuration(i.duration)),
        el("td", {}, i.message),
        el("td", {}, i.has_still ? el("a", { href: `/api/v1/audit-jobs/${job.id}/incidents/${i.id}/still`, target: "_blank" }, "still") : "",
          " ", i.has_clip ? el("a", { href: `/api/v1/audit-jobs/${job.id}/incidents/${i.id}/clip`, target: "_blank" }, "clip") : ""))))));
}

document.getElementById("job-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = document.getElementById("upload").files[0];
  const path = document.getElementById("path").value.trim();
  const start = document.getElementById("start").value || null; // site time, as the API reads it
  let job;
  if (file) {
    const form = new FormData();
    form.append("video", file);
    form.append("camera", camera.value);
    if (start) form.append("start", start);
    job = await attempt(() => api("/api/v1/audit-jobs/upload", { method: "POST", body: form }), `Uploaded ${file.name}`);
  } else if (path) {
    job = await attempt(() => api("/api/v1/audit-jobs", { method: "POST", body: { path, camera: camera.value, start } }), "Audit queued");
  } else {
    toast("Choose a video file or give a server path", "error");
  }
  if (job) jobs();
});
if (!can("operator")) document.querySelector("#job-form button").disabled = true;
jobs();
