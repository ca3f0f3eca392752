// Analytics: counts by time, hour of day, camera, rule, kind, severity and status (SQL
// aggregates in the site's time zone), with the trend against the previous period.
import { api, attempt, el, filterOption, pageData, timeAxis, timezone } from "./api.js";
import { bars, columns } from "./charts.js";

const data = pageData();
const camera = document.getElementById("f-camera");
const rule = document.getElementById("f-rule");
// The cameras whose incidents are stored too, those the site no longer has among them.
for (const c of data.cameras || []) camera.append(filterOption(c.id, c.name, c.removed));
for (const r of data.rules || []) rule.append(filterOption(r.id, r.id, r.removed));
const period = document.getElementById("period");
const dayFmt = new Intl.DateTimeFormat("en-GB", { timeZone: timezone, month: "2-digit", day: "2-digit" });
const hourFmt = new Intl.DateTimeFormat("en-GB", { timeZone: timezone, hour: "2-digit", hour12: false });

function filter(since, until) {
  const q = new URLSearchParams({ since: since.toFixed(0), until: until.toFixed(0) });
  if (camera.value) q.set("camera", camera.value);
  if (rule.value) q.set("rule", rule.value);
  return q;
}

async function stats(q, ...by) {
  const params = new URLSearchParams(q);
  for (const b of by) params.append("by", b);
  return api(`/api/v1/stats?${params}`);
}

// Only the answers to the newest load are drawn (as on the incident page): loads overlap when
// the filters change faster than the server answers, and an older one finishing last put the
// charts of the filter before back under the new filter. `total`'s data-answered counts the
// loads that finished, drawn or not (tests wait on it).
let newest = 0;
const total = document.getElementById("total");

async function load() {
  const mine = ++newest;
  try {
    await draw(mine);
  } finally {
    total.dataset.answered = String(+(total.dataset.answered || 0) + 1);
  }
}

async function draw(mine) {
  const days = +period.value;
  const until = Date.now() / 1000;
  const since = until - days * 86400;
  const q = filter(since, until);
  const unit = days <= 2 ? "hour" : "day";
  const results = await attempt(() => Promise.all([
    stats(q, unit), stats(q, "hour"), stats(q, "camera"), stats(q, "rule"), stats(q, "kind"),
    stats(q, "severity"), stats(q, "status"), stats(filter(since - days * 86400, since), "camera"),
  ]));
  if (!results || mine !== newest) return;
  const [time, hours, cams, rules, kinds, sevs, statuses, previous] = results;
  // Each bar is labelled by its own bucket's start (a local midnight or hour of the site).
  const axis = timeAxis(time.buckets, since, until, unit);
  const labels = axis.map(([t]) => unit === "hour" ? `${hourFmt.format(new Date(t * 1000))}h` : dayFmt.format(new Date(t * 1000)));
  columns(document.getElementById("c-time"), labels, axis.map(([, count]) => count));
  const byHour = new Array(24).fill(0);
  for (const b of hours.buckets) byHour[+hourFmt.format(new Date(b.start * 1000)) % 24] += b.count;
  columns(document.getElementById("c-hour"), byHour.map((_, h) => String(h).padStart(2, "0")), byHour, { every: 3 });
  bars(document.getElementById("c-camera"), cams.buckets.map((b) => [b.camera, b.count]));
  bars(document.getElementById("c-rule"), rules.buckets.map((b) => [b.rule, b.count]));
  bars(document.getElementById("c-kind"), kinds.buckets.map((b) => [b.kind, b.count]));
  bars(document.getElementById("c-severity"), sevs.buckets.map((b) => [b.severity, b.count]));
  bars(document.getElementById("c-status"), statuses.buckets.map((b) => [b.status.replace("_", " "), b.count]));
  total.textContent = `${time.total} incidents in the period`;
  const before = previous.total;
  const change = before ? Math.round(((time.total - before) / before) * 100) : null;
  document.getElementById("trend").textContent = change === null
    ? `Previous period: ${before} incidents.`
    : `Trend: ${change >= 0 ? "+" : ""}${change}% against the previous ${days} day(s) (${before} incidents).`;
}

// PPE checked per camera and item, from the running server's camera states (not stored: the
// share is about what the cameras can see now, not a history of incidents).
const pct = (share) => share === null ? "–" : `${Math.round(100 * share)} %`;
async function loadPpe() {
  const cameras = await attempt(() => api("/api/v1/cameras"));
  if (!cameras) return;
  const body = document.querySelector("#ppe-coverage tbody");
  body.replaceChildren();
  for (const c of cameras) {
    const state = c.state || {};
    for (const item of state.ppe || []) {
      const warning = (state.warnings || []).find((w) => w.includes(` ${item.item} `)) || "";
      body.append(el("tr", { dataset: { camera: c.id, item: item.item } },
        el("td", {}, c.name), el("td", {}, item.item),
        el("td", { class: warning ? "warn-text" : "" }, pct(item.share)), el("td", {}, Math.round(item.person_seconds)),
        el("td", {}, pct(item.total_share)), el("td", {}, Math.round(item.total_person_seconds)),
        el("td", { class: "warn-text" }, warning ? "PPE not verifiable" : ""),
      ));
    }
  }
  document.getElementById("ppe-none").hidden = body.children.length > 0;
}

for (const input of [period, camera, rule]) input.addEventListener("change", load);
loadPpe();
setInterval(loadPpe, 30000);
window.addEventListener("resize", () => { clearTimeout(window.__resize); window.__resize = setTimeout(load, 200); });
load();
