// Zones: draw and edit polygons (zones) and lines (tripwires) on a camera's newest frame; saved
// into the rule files through the API, which validates the whole rule set before writing.
import { api, attempt, can, el, pageData, toast } from "./api.js";
import { COLORS } from "./overlay.js";

const { cameras = [], files = [] } = pageData();
const cameraSelect = document.getElementById("camera");
const modeSelect = document.getElementById("mode");
const idInput = document.getElementById("geom-id");
const fileSelect = document.getElementById("file");
const still = document.getElementById("still");
const canvas = document.getElementById("canvas");
const list = document.getElementById("geom-list");
const status = document.getElementById("zone-status");
const ctx = canvas.getContext("2d");
for (const c of cameras) cameraSelect.append(el("option", { value: c.id }, c.name));
for (const f of files) fileSelect.append(el("option", { value: f }, f));

let items = []; // this camera's zones and lines
let site = []; // every camera's: ids are site-wide
let current = { id: "", kind: "zone", points: [], closed: false, existing: false };
let drag = -1;

function size() {
  const rect = canvas.getBoundingClientRect();
  canvas.width = rect.width;
  canvas.height = rect.height;
  canvas.dataset.size = `${canvas.width}x${canvas.height}`; // what clicks are drawn against (tests wait on it)
  draw();
}

function draw() {
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  ctx.lineWidth = 2;
  ctx.font = "600 12px system-ui";
  for (const item of items) {
    if (item.id === current.id && current.existing) continue;
    shape(item.points, item.kind === "zone", item.kind === "zone" ? COLORS.zone : COLORS.line, false, item.id);
  }
  shape(current.points, current.kind === "zone" && current.closed, COLORS.unknown, true, current.id || "new");
  canvas.dataset.points = String(current.points.length);
}

function shape(points, closed, color, handles, name) {
  if (!points.length) return;
  const w = canvas.width;
  const h = canvas.height;
  ctx.beginPath();
  points.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
  if (closed) { ctx.closePath(); ctx.fillStyle = "rgba(245,197,66,0.15)"; if (!handles) ctx.fillStyle = COLORS.zoneFill; ctx.fill(); }
  ctx.strokeStyle = color;
  ctx.stroke();
  if (handles) for (const [x, y] of points) { ctx.fillStyle = color; ctx.fillRect(x * w - 4, y * h - 4, 8, 8); }
  ctx.fillStyle = color;
  ctx.fillText(name, points[0][0] * w + 6, points[0][1] * h - 6);
}

function at(event) {
  const rect = canvas.getBoundingClientRect();
  return [Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)), Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height))];
}

function near(point) {
  const w = canvas.width;
  const h = canvas.height;
  return current.points.findIndex(([x, y]) => Math.hypot((x - point[0]) * w, (y - point[1]) * h) < 8);
}

canvas.addEventListener("mousedown", (event) => {
  const point = at(event);
  const hit = near(point);
  if (hit === 0 && current.kind === "zone" && !current.closed && current.points.length >= 3) {
    current.closed = true;
  } else if (hit >= 0) {
    drag = hit;
  } else if (current.kind === "line" ? current.points.length < 2 : !current.closed) {
    current.points.push(point);
  }
  draw();
});
canvas.addEventListener("mousemove", (event) => { if (drag >= 0) { current.points[drag] = at(event); draw(); } });
window.addEventListener("mouseup", () => { drag = -1; });
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea")) return;
  if (event.key === "Enter" && current.kind === "zone" && current.points.length >= 3) { current.closed = true; draw(); }
  if (event.key === "Backspace" || (event.key === "z" && event.ctrlKey)) { event.preventDefault(); undo(); }
});
function undo() { current.points.pop(); current.closed = false; draw(); }
document.getElementById("undo").addEventListener("click", undo);
document.getElementById("new").addEventListener("click", () => fresh());
modeSelect.addEventListener("change", () => { current.kind = modeSelect.value; current.closed = false; draw(); });

function fresh() {
  current = { id: "", kind: modeSelect.value, points: [], closed: false, existing: false };
  idInput.value = "";
  renderList();
  draw();
}

function edit(item) {
  current = { id: item.id, kind: item.kind, points: item.points.map((p) => [...p]), closed: true, existing: true };
  idInput.value = item.id;
  modeSelect.value = item.kind;
  renderList();
  draw();
}

function renderList() {
  list.replaceChildren(...items.map((item) => el("li", {
    class: item.id === current.id ? "current" : "", onclick: () => edit(item), dataset: { id: item.id },
  }, `${item.kind === "zone" ? "▱" : "↗"} ${item.id}`, el("span", { class: "muted" }, item.rules.length ? ` · ${item.rules.join(", ")}` : " · unused"))));
}

async function loadCamera() {
  const camera = cameraSelect.value;
  const loaded = await attempt(() => api("/api/v1/zones"));
  site = loaded || [];
  items = site.filter((item) => item.camera === camera);
  still.src = `/api/v1/cameras/${encodeURIComponent(camera)}/frame.jpg?t=${Date.now()}`;
  fresh();
}
still.addEventListener("load", size);
still.addEventListener("error", () => {
  still.removeAttribute("src");
  still.style.aspectRatio = "16 / 9";
  status.textContent = "No live frame from this camera yet: drawing on a blank frame.";
  size();
});
window.addEventListener("resize", size);
cameraSelect.addEventListener("change", loadCamera);

/** The zone (`kind` "zone") or line `id` of another camera than the one drawn on, if any. */
function elsewhere(id, kind) {
  return site.find((item) => item.id === id && item.kind === kind && item.camera !== cameraSelect.value);
}

/** Whether the site has camera `id` (a zone in force may still be on a camera since removed). */
const inSite = (id) => cameras.some((c) => c.id === id);

/**
 * Why `id` cannot be drawn on this camera, or "": a rule names its zone or line by id alone, so
 * another camera's id saved here would move that zone off its camera (the server refuses it
 * with the same sentence; this says so before the round trip). One of a camera the site no
 * longer has is moved here: that is how it is fixed (the server allows it too).
 */
function taken(id, kind) {
  const other = elsewhere(id, kind);
  return other && inSite(other.camera) ? `${kind} ${id} belongs to camera ${other.camera}; choose another id` : "";
}

document.getElementById("save").addEventListener("click", async () => {
  const id = idInput.value.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id)) { toast("Give it an id: letters, digits, _ . -", "error"); return; }
  const refused = taken(id, current.kind);
  if (refused) { toast(refused, "error"); return; }
  const zone = current.kind === "zone";
  if (zone && current.points.length < 3) { toast("A zone needs at least 3 points", "error"); return; }
  if (!zone && current.points.length !== 2) { toast("A line needs 2 points", "error"); return; }
  const body = { camera: cameraSelect.value, points: current.points, file: fileSelect.value || null };
  const moved = elsewhere(id, current.kind);
  const result = await attempt(() => api(`/api/v1/${zone ? "zones" : "lines"}/${encodeURIComponent(id)}`, { method: "PUT", body }),
    `${zone ? "Zone" : "Line"} ${id} saved`);
  if (result) {
    status.textContent = `Saved to ${result.file}; rules generation ${result.status.generation}`
      + (moved ? `; moved here from camera ${moved.camera} (not in the site now)` : "");
    status.dataset.saved = id;
    await loadCamera();
  }
});
document.getElementById("delete").addEventListener("click", async () => {
  if (!current.existing || !confirm(`Delete ${current.id}?`)) return;
  const section = current.kind === "zone" ? "zones" : "lines";
  if (await attempt(() => api(`/api/v1/${section}/${encodeURIComponent(current.id)}`, { method: "DELETE" }), "Deleted")) loadCamera();
});
if (!can("admin")) for (const id of ["save", "delete"]) document.getElementById(id).disabled = true;

// "Test this change": the rule file as it would read with the zone or line as drawn (unsaved),
// on footage of the camera drawn on (said again whenever the camera changes).
const backtestSource = () => document.dispatchEvent(new CustomEvent("safewatch:backtest-source", {
  detail: {
    camera: () => cameraSelect.value,
    files: async () => {
      const id = idInput.value.trim();
      const zone = current.kind === "zone";
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id)) throw new Error("Give the zone or line an id first");
      const refused = taken(id, current.kind);
      if (refused) throw new Error(refused);
      if (zone ? current.points.length < 3 : current.points.length !== 2) throw new Error(zone ? "A zone needs at least 3 points" : "A line needs 2 points");
      const body = { camera: cameraSelect.value, points: current.points, file: fileSelect.value || null };
      const edit = await api(`/api/v1/${zone ? "zones" : "lines"}/${encodeURIComponent(id)}/preview`, { method: "POST", body });
      return { [edit.file]: edit.text };
    },
  },
}));
backtestSource();
cameraSelect.addEventListener("change", backtestSource);
if (cameras.length) loadCamera();
