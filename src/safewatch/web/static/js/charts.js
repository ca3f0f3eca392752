// Small canvas bar charts (no library): legible labels, tabular numbers, device-pixel sharp.
const INK = "#8b9bab";
const BAR = "#d9822b";

function setup(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300;
  const height = canvas.clientHeight || +canvas.getAttribute("height") || 180;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, width, height };
}

/** Vertical bars for a series (time or categories). */
export function columns(canvas, labels, values, { every = 0 } = {}) {
  const { ctx, width, height } = setup(canvas);
  const top = Math.max(1, ...values);
  const left = 30;
  const bottom = 18;
  const plotH = height - bottom - 6;
  const step = (width - left) / Math.max(1, values.length);
  ctx.fillStyle = INK;
  ctx.textAlign = "right";
  for (const fraction of [0, 0.5, 1]) {
    const y = 6 + plotH * (1 - fraction);
    ctx.fillText(String(Math.round(top * fraction)), left - 4, y + 4);
    ctx.fillStyle = "#2c3a47";
    ctx.fillRect(left, y, width - left, 1);
    ctx.fillStyle = INK;
  }
  const skip = every || Math.max(1, Math.ceil(values.length / 12));
  ctx.textAlign = "center";
  values.forEach((value, i) => {
    const h = (value / top) * plotH;
    ctx.fillStyle = BAR;
    ctx.fillRect(left + i * step + 1, 6 + plotH - h, Math.max(1, step - 2), h);
    if (i % skip === 0) {
      ctx.fillStyle = INK;
      ctx.fillText(labels[i], left + i * step + step / 2, height - 4);
    }
  });
  canvas.dataset.values = JSON.stringify(values);
}

/** Horizontal bars, largest first. */
export function bars(canvas, pairs) {
  const { ctx, width, height } = setup(canvas);
  const sorted = [...pairs].sort((a, b) => b[1] - a[1]).slice(0, 8);
  const top = Math.max(1, ...sorted.map((p) => p[1]));
  const row = Math.min(22, height / Math.max(1, sorted.length));
  const left = Math.min(140, width * 0.4);
  sorted.forEach(([label, value], i) => {
    const y = i * row + 2;
    ctx.fillStyle = INK;
    ctx.textAlign = "right";
    ctx.fillText(String(label).slice(0, 22), left - 6, y + row * 0.65);
    const w = ((width - left - 40) * value) / top;
    ctx.fillStyle = BAR;
    ctx.fillRect(left, y + 3, Math.max(1, w), row - 6);
    ctx.fillStyle = "#e6edf3";
    ctx.textAlign = "left";
    ctx.fillText(String(value), left + w + 4, y + row * 0.65);
  });
  if (!sorted.length) { ctx.fillStyle = INK; ctx.fillText("no incidents", 10, 20); }
  canvas.dataset.values = JSON.stringify(sorted);
}
