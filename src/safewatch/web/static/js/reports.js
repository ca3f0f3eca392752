// Reports: download the PDF of the filtered view (the API builds it from the same filter).
import { api, attempt, el, filterOption, pageData, parseLocal, toast } from "./api.js";

const data = pageData();
// The cameras whose incidents are stored too, those the site no longer has among them.
for (const c of data.cameras || []) document.getElementById("f-camera").append(filterOption(c.id, c.name, c.removed));
for (const r of data.rules || []) document.getElementById("f-rule").append(filterOption(r.id, r.id, r.removed));
const form = document.getElementById("report-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = new URLSearchParams();
  for (const name of ["camera", "rule", "severity", "status"]) {
    const value = form.elements.namedItem(name).value;
    if (value) q.set(name, value);
  }
  for (const name of ["since", "until"]) {
    const value = parseLocal(form.elements.namedItem(name).value);
    if (value !== null) q.set(name, value.toFixed(0));
  }
  q.set("stills", form.elements.namedItem("stills").value || "6");
  const response = await attempt(() => api(`/api/v1/reports/incidents.pdf?${q}`, { raw: true }));
  if (!response) return;
  const blob = await response.blob();
  const name = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "")?.[1] || "safewatch-report.pdf";
  const link = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  toast(`Report ${name} downloaded`, "ok");
});
