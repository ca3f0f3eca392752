// Live: a grid of cameras. Each tile plays the camera's video at its own frame rate (fragmented
// MP4 over /api/v1/ws/cameras/{id}/video, Media Source Extensions; live_video.js) and draws the
// analysis overlay from /api/v1/ws/cameras/{id} on a canvas above it, matched by wall-clock time.
// Where MSE or the codec is missing, the metadata socket also sends each analysed frame (JPEG,
// heads hidden) and the tile draws both on one canvas. A camera with a media server URL (MediaMTX
// WebRTC page or HLS) plays from there under the canvas, which then only carries the overlay.
import { api, el, fmtTime, liveSocket, pageData, STATUS_LABEL } from "./api.js";
import { drawOverlay } from "./overlay.js";
import { playLive } from "./live_video.js";

// Video at the camera's frame rate (MSE) where the browser can play it; JPEG frames at the
// analysis rate otherwise. Heads are hidden unless an admin chose the original (?video=raw, logged).
const isAdmin = document.body.dataset.role === "admin";
const videoMode = isAdmin && new URLSearchParams(location.search).get("video") === "raw" ? "raw" : "blurred";
const modeSelect = document.getElementById("video-mode");
if (modeSelect) {
  modeSelect.hidden = !isAdmin;
  modeSelect.closest("label").hidden = !isAdmin;
  modeSelect.value = videoMode;
  modeSelect.addEventListener("change", () => {
    const url = new URL(location.href);
    if (modeSelect.value === "raw") url.searchParams.set("video", "raw"); else url.searchParams.delete("video");
    location.href = url.toString();
  });
}
if (videoMode === "raw") {
  const note = document.getElementById("privacy-note");
  if (note) {
    note.textContent = "Original video: heads are NOT hidden, and your viewing is logged.";
    note.className = "warn-text";
  }
}
const META_KEEP = 64;
const META_MATCH = 1.5; // seconds: metadata further from the frame on screen is not drawn
const STALL_MS = 3000; // no video frame shown this long while its socket is open: stalled
const REOPEN_MAX_MS = 30000; // a stalled tile reopens its video 3, 6, 12, 24, then every 30 s
// serve --cluster: the longest a relay's "reconnecting" keeps the watchdog off (its own wait for a
// new owner is 60 s by default); a test may shorten it (globalThis.safewatchRelayWaitMs).
const RELAY_WAIT_MS = globalThis.safewatchRelayWaitMs ?? 90000;

const { cameras = [] } = pageData();
if (videoMode !== "raw" && cameras.some((c) => c.enabled && c.live_url)) {
  const note = document.getElementById("privacy-note");
  if (note) note.textContent = "Heads are hidden as in evidence, except in tiles marked \"original video\".";
}
const grid = document.getElementById("grid");
const show = { zones: true, ids: true, ppe: true };
for (const key of ["zones", "ids", "ppe"]) {
  const box = document.getElementById(`show-${key}`);
  box?.addEventListener("change", () => { show[key] = box.checked; });
}
const layout = document.getElementById("layout");
function applyLayout() {
  const value = layout.value;
  const n = value === "auto" ? Math.ceil(Math.sqrt(Math.max(1, cameras.filter((c) => c.enabled).length))) : +value;
  grid.style.gridTemplateColumns = `repeat(${n}, minmax(0, 1fr))`;
}
layout?.addEventListener("change", applyLayout);

function tile(camera) {
  const canvas = el("canvas", { class: "overlay", width: 640, height: 360 });
  const state = el("span", { class: "state", role: "status" }, camera.enabled ? "connecting…" : "disabled");
  const info = el("span", { class: "info muted" });
  // How much of the people's time in view their PPE could be checked (the last 10 min): a low
  // share means PPE rules are silent for most people here, not that everybody complies.
  const ppe = el("span", { class: "ppe-share muted", hidden: true });
  // The server sends live_url only where the camera hides nothing (privacy off) or to an admin
  // who chose the original (logged): the media server's picture is the original video, so the
  // tile says so rather than the page's "heads are hidden".
  const original = camera.live_url
    ? el("span", { class: "original-note warn-text" }, "original video: heads NOT hidden")
    : null;
  const stage = el("div", { class: "stage" });
  let player = null;
  let mse = !camera.live_url && "MediaSource" in window;
  if (mse) {
    player = el("video", { autoplay: true, muted: true, playsinline: true, "aria-label": `${camera.name} live video` });
    stage.append(player);
  } else if (camera.live_url) {
    player = camera.live_url.endsWith(".m3u8")
      ? el("video", { src: camera.live_url, autoplay: true, muted: true, playsinline: true })
      : el("iframe", { src: camera.live_url, allow: "autoplay", title: `${camera.name} live` });
    stage.append(player);
  }
  stage.append(canvas);
  const node = el("article", { class: "tile", dataset: { camera: camera.id, frames: "0", boxes: "0", state: camera.enabled ? "connecting" : "disabled" }, "aria-label": camera.name },
    el("header", {}, el("h2", { class: "tile-name" }, camera.name), " ", state, " ", original, " ", ppe, el("span", { class: "spacer" }), info),
    stage);
  if (!camera.enabled) return node;
  // The tile shows the camera's state as the runtime sees it (the WebSocket's "state" messages,
  // once a second), never whether the socket is open: a dead camera must not look live.
  let shown = camera.state || null;
  let shownAt = performance.now();
  let socketUp = false;
  let refused = null; // a socket the server refused for good (4403, 4404): its reason stays shown
  let stalled = false; // the video watchdog (startVideo): no frame shown for STALL_MS
  const showState = () => {
    if (refused) {
      state.textContent = refused;
      state.className = "state st-cam-down";
      node.dataset.state = "refused";
      node.classList.add("down");
      return;
    }
    if (stalled) info.textContent = "no video";
    if (stalled && (!shown || ["streaming", "unknown"].includes(shown.state))) {
      // The picture on screen is black or frozen while the runtime says the camera streams (the
      // API's own connection to it, or the browser's player, failed while the analysis goes
      // on): a dead picture must not look live. A camera the runtime itself reports down,
      // reconnecting... keeps that state, which says why, with "video stalled" after it.
      state.textContent = `video stalled${socketUp ? "" : " · server unreachable"}`;
      state.className = "state st-cam-down";
      state.title = `no video frame for ${STALL_MS / 1000} s or more: reopening the video`;
      node.dataset.state = "stalled";
      node.classList.add("down");
      return;
    }
    if (!shown) return;
    const age = shown.frame_age === null ? null : shown.frame_age + (performance.now() - shownAt) / 1000;
    const ageText = age === null ? "" : age < 2 ? "" : ` · frame ${age < 90 ? `${age.toFixed(0)} s` : `${Math.round(age / 60)} min`} old`;
    const word = { streaming: "streaming", stale: "stale", frozen: "picture frozen", reconnecting: "reconnecting", connecting: "connecting", down: "down", disabled: "disabled", unknown: "state unknown" }[shown.state] || shown.state;
    state.textContent = `${word}${ageText}${stalled ? " · video stalled" : ""}${socketUp ? "" : " · server unreachable"}`;
    state.className = `state st-cam-${shown.state}`;
    state.title = shown.message || "";
    node.dataset.state = shown.state;
    node.classList.toggle("down", shown.state !== "streaming");
    showPpe(shown.ppe || [], shown.warnings || []);
  };
  const showPpe = (items, warnings) => {
    const judged = items.filter((item) => item.share !== null);
    ppe.hidden = judged.length === 0;
    if (ppe.hidden) return;
    ppe.textContent = "PPE checked " + judged.map((item) => `${item.item} ${Math.round(100 * item.share)} %`).join(", ");
    ppe.className = warnings.length ? "ppe-share warn-text" : "ppe-share muted";
    ppe.dataset.warn = warnings.length ? "1" : "0";
    ppe.title = warnings.length
      ? warnings.join("\n")
      : judged.map((item) => `${item.item}: ${Math.round(item.verified_seconds)} of ${Math.round(item.person_seconds)} person-seconds in the last ${Math.round(item.window_seconds / 60)} min had a verdict`).join("\n");
  };
  setInterval(showState, 1000);
  showState();
  const ctx = canvas.getContext("2d");
  let meta = null;
  let geometry = null;
  let frames = 0;
  // The rate over the last 2 s: one interval between two callbacks read 58-73 fps for a 24 fps
  // camera whenever the browser delivered two frames a display refresh apart.
  const draws = [];
  const redraw = (bitmap) => {
    if (bitmap) {
      if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
      }
      ctx.drawImage(bitmap, 0, 0);
      bitmap.close?.();
    } else {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
    }
    const boxes = drawOverlay(ctx, canvas.width, canvas.height, meta, geometry, show);
    frames += 1;
    node.dataset.frames = String(frames);
    node.dataset.boxes = String(boxes);
    const now = performance.now();
    draws.push(now);
    while (now - draws[0] > 2000) draws.shift();
    const fps = draws.length > 1 ? ((draws.length - 1) * 1000) / (now - draws[0]) : 0;
    const lag = mse && node.dataset.latency ? ` · ${(node.dataset.latency / 1000).toFixed(1)} s behind` : "";
    info.textContent = meta ? `${meta.tracks.filter((t) => !t.ppe_only).length} tracks · ${fps.toFixed(1)} fps${lag} · ${fmtTime(meta.timestamp, true)}` : `${fps.toFixed(1)} fps${lag}`;
  };
  // With MSE the overlay is drawn for each presented video frame from the analysis metadata of
  // the same moment (the newest analysed frame at or before it, by wall-clock time).
  const recent = [];
  const pick = (wall) => {
    let best = null;
    for (const m of recent) if (m.timestamp <= wall + 0.01 && (!best || m.timestamp > best.timestamp)) best = m;
    if (!best && recent.length) best = recent[0];
    return best && Math.abs(best.timestamp - wall) <= META_MATCH ? best : null;
  };
  let live = null;
  let metaSocket = null;
  const refuse = (code, reason) => { refused = reason || `refused by the server (${code})`; showState(); };
  const startVideo = () => {
    node.dataset.video = "mse";
    node.dataset.mode = videoMode;
    let videoFrames = 0;
    // Watchdog: the fps, latency and overlay are only updated per presented frame, so video that
    // stops arriving while its socket stays open (the API's own connection to the camera failing
    // while the analysis keeps its own, a stalled MSE pipeline) left a black or frozen picture
    // labelled "streaming" with the last figures. Checked every second: no frame for STALL_MS
    // while the socket is open marks the tile "video stalled" and reopens the video (backing
    // off while it stays stalled); the next frame shown clears it. Not counted while the tab is
    // hidden or the tile out of view (the browser throttles timers and frame callbacks there,
    // and pauses muted video out of view): the clock starts again when it is seen.
    let videoUp = false;
    let seen = true;
    // serve --cluster: while the relay says it waits for the camera's new owner ("reconnecting",
    // up to its failover_seconds, >= 60 s) its socket stays open and sends no video, and the
    // tile shows that state. Counted as a stall, reopen() cut the wait short: a new relay with
    // no owner closes at once (4503), and so on in a loop. Not counted until it streams again,
    // or for RELAY_WAIT_MS at most: a new owner's session that opens but never sends video (nor
    // "streaming") left the watchdog off for good, a frozen picture and nothing reopened.
    let relayWaitingSince = null; // performance.now() of the first "reconnecting" of this wait
    const relayWaiting = () =>
      relayWaitingSince !== null && performance.now() - relayWaitingSince < RELAY_WAIT_MS;
    let lastFrame = performance.now();
    let reopenAfter = STALL_MS;
    const rearm = () => { lastFrame = performance.now(); };
    const presented = () => { // a video frame was presented
      lastFrame = performance.now();
      if (stalled) { stalled = false; reopenAfter = STALL_MS; showState(); }
    };
    // Where the browser has no requestVideoFrameCallback (Firefox ESR 128), onFrame below never
    // runs: the watchdog itself reads the player's progress each second instead (frames decoded,
    // or its clock moving on; a new source starts both from zero, which is no progress). Without
    // it every playing tile there was marked stalled after 3 s and reopened again and again.
    let progress = { frames: 0, time: 0 };
    const advanced = () => {
      const read = { frames: player.getVideoPlaybackQuality?.().totalVideoFrames ?? 0, time: player.currentTime };
      const moved = read.frames > progress.frames || read.time > progress.time;
      progress = read;
      return moved;
    };
    document.addEventListener("visibilitychange", rearm);
    new IntersectionObserver((entries) => {
      seen = entries[entries.length - 1].isIntersecting;
      rearm();
    }).observe(node);
    setInterval(() => {
      if (!player.requestVideoFrameCallback && advanced()) presented();
      if (!mse || refused || !videoUp || !seen || document.hidden || relayWaiting()) { rearm(); return; }
      if (performance.now() - lastFrame < reopenAfter) return;
      const first = !stalled;
      stalled = true;
      if (first) ctx.clearRect(0, 0, canvas.width, canvas.height); // no boxes over a dead picture
      showState();
      live.reopen();
      reopenAfter = Math.min(reopenAfter * 2, REOPEN_MAX_MS);
      rearm();
    }, 1000);
    live = playLive(player, camera.id, videoMode, {
      onInit(header) { canvas.width = header.width; canvas.height = header.height; },
      onRefused: refuse,
      onState(up) { videoUp = up; relayWaitingSince = null; rearm(); },
      onRelay(message) {
        node.dataset.relay = message.state;
        if (message.state !== "reconnecting") relayWaitingSince = null;
        else relayWaitingSince ??= performance.now(); // a repeated "reconnecting" does not extend it
        player.title = message.state === "streaming"
          ? `live video relayed from analyzer ${message.owner}`
          : `live video ${message.state}: ${message.reason}`;
      },
      onUnsupported(codec) {
        // The browser cannot play this codec: JPEG frames at the analysis rate instead.
        console.warn(`live video ${codec} not playable here; JPEG frames instead`);
        mse = false;
        node.dataset.video = "jpeg";
        player.remove();
        metaSocket?.close();
        openMeta("jpeg");
      },
    });
    const onFrame = (_now, frame) => {
      if (!mse) return;
      const wall = live.wallAt(frame.mediaTime);
      presented();
      if (wall !== null) {
        meta = pick(wall);
        videoFrames += 1;
        node.dataset.vframes = String(videoFrames);
        node.dataset.latency = String(Math.round(Date.now() - wall * 1000));
        node.dataset.overlayLag = meta ? String(Math.round((wall - meta.timestamp) * 1000)) : "";
        redraw(null);
      }
      player.requestVideoFrameCallback(onFrame);
    };
    if (player.requestVideoFrameCallback) player.requestVideoFrameCallback(onFrame);
  };
  const openMeta = (video) => { metaSocket = liveSocket(`/api/v1/ws/cameras/${encodeURIComponent(camera.id)}?video=${video}&fps=10`, {
    binaryType: "blob",
    onRefused: refuse,
    onState(up) {
      socketUp = up;
      if (refused) return;
      if (!up) { state.textContent = "server unreachable, retrying…"; state.className = "state st-cam-down"; node.dataset.state = "unreachable"; }
      else showState();
    },
    async onMessage(event) {
      if (typeof event.data !== "string") {
        try { redraw(await createImageBitmap(event.data)); } catch { /* a frame lost */ }
        return;
      }
      const message = JSON.parse(event.data);
      if (message.type === "state") { shown = message; shownAt = performance.now(); showState(); }
      else if (message.type === "geometry") geometry = message;
      else if (message.type === "frame") {
        node.dataset.tracks = String(message.tracks.length);
        if (mse) {
          recent.push(message);
          if (recent.length > META_KEEP) recent.shift();
        } else {
          meta = message;
          if (video === "none") redraw(null);
        }
      }
    },
  }); };
  node.dataset.video = mse ? "mse" : camera.live_url ? "external" : "jpeg";
  openMeta(mse || camera.live_url ? "none" : "jpeg");
  if (mse) startVideo();
  return node;
}

for (const camera of cameras) grid.append(tile(camera));
if (!cameras.length) grid.append(el("p", { class: "muted" }, "No cameras in the site file."));
applyLayout();

// The incident feed starts with the newest open incidents (so it agrees with the open badge at
// page load) and then follows the live changes.
const feed = document.getElementById("feed-list");
const FEED_MAX = 50;
function feedItem(incident, what) {
  return el("li", { class: `sev-${incident.severity}`, dataset: { id: incident.id } },
    el("a", { href: `/incidents/${incident.id}` }, `${fmtTime(incident.started_at, true)} ${incident.camera_id} · ${incident.rule_id}`),
    el("span", { class: "muted" }, ` ${what}`));
}
document.addEventListener("safewatch:incident", ({ detail }) => {
  feed.querySelector(`li[data-id="${CSS.escape(detail.incident.id)}"]`)?.remove();
  feed.prepend(feedItem(detail.incident, `${detail.kind}${detail.actor ? ` by ${detail.actor}` : ""}`));
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
});
// Changes that arrive while the list loads stay on top. After a gap in the feed
// ("safewatch:resync", shell.js) the changes missed are unknown: the list is loaded again as at
// page load, replacing what it showed then (kept if the load fails).
let loads = 0;
function loadFeed() {
  const load = ++loads;
  const shown = [...feed.children];
  return api(`/api/v1/incidents?status=open&limit=${FEED_MAX}&count=false`).then((page) => {
    if (load !== loads) return;
    for (const li of shown) li.remove();
    const known = new Set([...feed.children].map((li) => li.dataset.id));
    feed.append(...page.items.filter((i) => !known.has(i.id)).map((i) => feedItem(i, STATUS_LABEL[i.status])));
    while (feed.children.length > FEED_MAX) feed.lastChild.remove();
    feed.dataset.loaded = "true";
    feed.dataset.loads = String(load);
  }).catch(() => { if (load === loads) feed.dataset.loaded = "error"; });
}
loadFeed();
document.addEventListener("safewatch:resync", loadFeed);
