// Draw what the pipeline sees over a frame: zones, lines, tracked boxes with ids, labels and PPE
// state. Coordinates arrive normalised (0-1), so one function serves any canvas size.

export const COLORS = {
  ok: "#3ecf8e", bad: "#ff4d4f", unknown: "#f5c542", zone: "rgba(77, 163, 255, 0.9)",
  zoneFill: "rgba(77, 163, 255, 0.14)", line: "#c77dff", detection: "rgba(255,255,255,0.55)",
  unconfirmed: "#e0e0e0",
};

function trackColor(track) {
  if (track.violating) return COLORS.bad;
  const states = Object.values(track.ppe || {});
  if (states.includes("absent")) return COLORS.bad;
  if (states.includes("unknown")) return COLORS.unknown;
  return COLORS.ok;
}

function ppeText(ppe) {
  return Object.entries(ppe || {})
    .map(([item, state]) => `${item}${state === "present" ? "✓" : state === "absent" ? "✗" : "?"}`)
    .join(" ");
}

/**
 * Draw the overlay.
 * @param {CanvasRenderingContext2D} ctx
 * @param {number} w canvas width
 * @param {number} h canvas height
 * @param {object|null} meta the camera's frame message
 * @param {object|null} geometry the camera's geometry message
 * @param {{zones?: boolean, ids?: boolean, ppe?: boolean}} show
 * @returns {number} boxes drawn
 */
export function drawOverlay(ctx, w, h, meta, geometry, show = {}) {
  const font = Math.max(10, Math.round(h / 36));
  ctx.lineWidth = Math.max(1.5, h / 300);
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  if (geometry && show.zones !== false) {
    for (const zone of geometry.zones || []) {
      ctx.beginPath();
      zone.polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
      ctx.closePath();
      ctx.fillStyle = COLORS.zoneFill;
      ctx.fill();
      ctx.strokeStyle = COLORS.zone;
      ctx.stroke();
      const [lx, ly] = zone.polygon[0];
      label(ctx, zone.id, lx * w, ly * h, COLORS.zone, font);
    }
    for (const line of geometry.lines || []) {
      const [[ax, ay], [bx, by]] = line.points;
      ctx.strokeStyle = COLORS.line;
      ctx.beginPath();
      ctx.moveTo(ax * w, ay * h);
      ctx.lineTo(bx * w, by * h);
      ctx.stroke();
      arrowHead(ctx, ax * w, ay * h, bx * w, by * h);
      label(ctx, line.id, ax * w, ay * h, COLORS.line, font);
    }
  }
  if (!meta) return 0;
  let boxes = 0;
  ctx.lineWidth = Math.max(1, h / 500);
  for (const det of meta.detections || []) {
    const [x1, y1, x2, y2] = det.box;
    ctx.strokeStyle = det.label.startsWith("no_") ? COLORS.bad : COLORS.detection;
    if (det.unconfirmed) {
      // Detected but not yet a confirmed track: dashed, labelled, counted as a box drawn.
      ctx.save();
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = Math.max(1.5, h / 300);
      ctx.strokeStyle = COLORS.unconfirmed;
      ctx.strokeRect(x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h);
      ctx.restore();
      label(ctx, `${det.label} (not tracked yet)`, x1 * w, Math.max(0, y1 * h - font - 3), COLORS.unconfirmed, font);
      boxes += 1;
      continue;
    }
    ctx.strokeRect(x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h);
  }
  ctx.lineWidth = Math.max(2, h / 250);
  for (const track of meta.tracks || []) {
    const [x1, y1, x2, y2] = track.box;
    const color = trackColor(track);
    ctx.strokeStyle = color;
    // A PPE-only subject (a weak box, a lone head or a face, tracked only for its hard-hat
    // verdict) is dotted, unlike the dashed "not tracked yet": no zone, counting or distance
    // rule sees it.
    if (track.ppe_only) ctx.setLineDash([2, 3]);
    ctx.strokeRect(x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h);
    ctx.setLineDash([]);
    boxes += 1;
    const parts = [];
    if (show.ids !== false) parts.push(`#${track.id}`);
    parts.push(track.ppe_only ? `${track.label} (PPE only)` : track.label);
    if (show.ppe !== false && track.ppe && Object.keys(track.ppe).length) parts.push(ppeText(track.ppe));
    label(ctx, parts.join(" "), x1 * w, Math.max(0, y1 * h - font - 3), color, font);
  }
  return boxes;
}

function label(ctx, text, x, y, color, font) {
  const width = ctx.measureText(text).width + 6;
  ctx.fillStyle = "rgba(0,0,0,0.65)";
  ctx.fillRect(x, y, width, font + 3);
  ctx.fillStyle = color;
  ctx.fillText(text, x + 3, y + 2);
}

function arrowHead(ctx, ax, ay, bx, by) {
  const angle = Math.atan2(by - ay, bx - ax);
  const size = 10;
  ctx.beginPath();
  ctx.moveTo(bx, by);
  ctx.lineTo(bx - size * Math.cos(angle - 0.4), by - size * Math.sin(angle - 0.4));
  ctx.moveTo(bx, by);
  ctx.lineTo(bx - size * Math.cos(angle + 0.4), by - size * Math.sin(angle + 0.4));
  ctx.stroke();
}
