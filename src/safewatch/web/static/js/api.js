// Shared helpers of every page: the JSON API with CSRF, times in the site's zone, small DOM
// builders and toasts. No framework, no build step: ES modules served as they are.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
export const timezone = document.body.dataset.timezone || "UTC";
export const role = document.body.dataset.role || "viewer";
const ROLES = ["viewer", "operator", "admin"];

/** Whether the user has at least `needed`. */
export function can(needed) {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

/** The page's data (JSON in data-page-data on <main>). */
export function pageData() {
  const raw = document.getElementById("main")?.dataset.pageData;
  return raw ? JSON.parse(raw) : {};
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error || "error";
    this.details = body?.details || [];
  }
}

/** Send the browser to log in, and back to this page afterwards (an API call's 401, a live
 *  socket closed with 4401). */
let leaving = false;

/** Go to the login page, once: every live socket of a page (overlay, video, incident feed)
 *  closes with 4401 when the session ends, and a second navigation aborted the first. */
export function toLogin() {
  if (leaving) return;
  leaving = true;
  location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
}

/** Call the JSON API; throws ApiError with the server's message. */
export async function api(path, { method = "GET", body, raw = false, signal, headers: extra = {} } = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, signal, credentials: "same-origin" });
  if (response.status === 401) {
    toLogin();
    throw new ApiError(401, { message: "logged out" });
  }
  if (!response.ok) {
    let detail = {};
    try { detail = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

const dateTime = new Intl.DateTimeFormat("en-GB", {
  timeZone: timezone, year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const timeOnly = new Intl.DateTimeFormat("en-GB", {
  timeZone: timezone, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

/** Epoch seconds as "YYYY-MM-DD HH:MM:SS" in the site's time zone. */
export function fmtTime(seconds, short = false) {
  if (seconds === null || seconds === undefined) return "—";
  const date = new Date(seconds * 1000);
  if (short) return timeOnly.format(date);
  const parts = Object.fromEntries(dateTime.formatToParts(date).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

/** The site's wall clock at epoch milliseconds `ms`, as milliseconds of that wall time read as UTC. */
function wallClock(ms) {
  const parts = Object.fromEntries(dateTime.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  return Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour % 24, +parts.minute, +parts.second);
}

/**
 * A datetime-local input's value (site time zone) as epoch seconds, or null.
 *
 * The zone's offset is not known until the moment is, so the offsets a day either side are the
 * candidates (one, or the two of a daylight-saving change) and the one whose moment shows the
 * typed wall time wins; a single correction with the offset at "wall time read as UTC" was an hour
 * off next to a change (New York 2024-03-10T03:30 gave 08:30Z). Like the server (Python's fold=0):
 * a time that happens twice is the first one, and a time a change skips is read with the offset
 * before the change, i.e. the later moment (02:30 on New York's spring-forward night is 03:30 EDT).
 */
export function parseLocal(value) {
  if (!value) return null;
  const typed = Date.parse(`${value}:00Z`);
  if (Number.isNaN(typed)) return null;
  const day = 86400000;
  const candidates = [typed - day, typed + day].map((t) => typed - (wallClock(t) - t)).sort((a, b) => a - b);
  const shown = candidates.find((t) => wallClock(t) === typed);
  return (shown ?? candidates[candidates.length - 1]) / 1000;
}

/** Epoch seconds as a datetime-local input's value ("YYYY-MM-DDTHH:MM") in the site's zone. */
export function toLocalInput(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  const parts = Object.fromEntries(dateTime.formatToParts(new Date(seconds * 1000)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour % 24 === 0 ? "00" : parts.hour}:${parts.minute}`;
}

/**
 * The moment of the latest of `hours` (site wall-clock hours, ascending) at or before `now`:
 * today's last one that has begun, else yesterday's last. Today's 00:00 is latestLocalHour(now, [0]).
 *
 * The hour is read off the site's clock, not counted from midnight: a day with a daylight-saving
 * change has 23 or 25 hours, so at 06:30 on New York's 2024-03-10 only 5.5 hours have passed
 * since midnight and a count would still be in yesterday's 22:00 shift.
 */
export function latestLocalHour(now, hours) {
  const shown = toLocalInput(now);
  const today = shown.slice(0, 10);
  const at = (date, hour) => parseLocal(`${date}T${String(hour).padStart(2, "0")}:00`);
  const begun = hours.filter((h) => h <= +shown.slice(11, 13));
  if (begun.length) return at(today, begun[begun.length - 1]);
  const yesterday = toLocalInput(at(today, 0) - 3600).slice(0, 10);
  return at(yesterday, hours[hours.length - 1]);
}

/**
 * A chart's time axis: [start, count] for every local hour or day ("hour" | "day") of the site's
 * zone from the one holding `since` through `until`, with the count of the /api/v1/stats bucket
 * that starts there (0 for a quiet one). Steps go from local midnight to local midnight (23 or
 * 25 hours on a daylight-saving change) or local hour to local hour (15 minutes past the UTC hour
 * in Nepal), so each bucket sits under its own start; stepping UTC midnights and keying counts by
 * start / 86400 put each day's count under the previous date west of UTC. A bucket's own start is
 * always on the axis, even one the steps miss.
 */
export function timeAxis(buckets, since, until, unit) {
  const counts = new Map(buckets.map((b) => [b.start, b.count]));
  const starts = new Set(counts.keys());
  if (unit === "hour") {
    // Quarter-hour steps, keeping the whole local hours: after a 30-minute change (Lord Howe)
    // whole hours are no longer 3600 s from the first one, and fixed steps added a zero bar at
    // every half hour beside the server's buckets.
    const first = Math.floor(since) - (wallClock(Math.floor(since) * 1000) / 1000) % 3600;
    for (let t = first; t <= until; t += 900) {
      if ((wallClock(t * 1000) / 1000) % 3600 === 0) starts.add(t);
    }
  } else {
    for (let t = latestLocalHour(since, [0]); t <= until;) {
      starts.add(t);
      const date = Date.parse(`${toLocalInput(t).slice(0, 10)}T00:00Z`);
      t = parseLocal(new Date(date + 86400000).toISOString().slice(0, 16));
    }
  }
  return [...starts].sort((a, b) => a - b).map((t) => [t, counts.get(t) || 0]);
}

/** "12.3 s" under a minute, else "2 min 5 s". Rounded before it is split: splitting first gave
 * "1 min 60 s" for 119.6 s and "60.0 s" for 59.97 s. */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "running";
  if (Math.round(seconds * 10) < 600) return `${seconds.toFixed(1)} s`;
  const total = Math.round(seconds);
  return `${Math.floor(total / 60)} min ${total % 60} s`;
}

/** Build an element: el("td", {class: "x", dataset: {id}}, "text", child). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An option of a camera or rule filter. One the site no longer has (removed, renamed) but
 *  whose incidents are stored still filters, marked so it is not taken for a current one: the
 *  pages that filter incidents list the server's `removed` cameras and a bookmark's values so. */
export function filterOption(value, label = value, removed = false) {
  return el("option", { value }, removed ? `${label} (not in the site now)` : label);
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/** Run an async action, showing its error as a toast. */
export async function attempt(action, success) {
  try {
    const result = await action();
    if (success) toast(success, "ok");
    return result;
  } catch (error) {
    if (error.status !== 401) toast(error.message, "error");
    return undefined;
  }
}

// A live socket's retries: 0.5 s after a close, doubling to 10 s while they keep failing, each
// ±20 % at random so that the sockets of a page (a wall of 32 tiles opens ~65) do not all retry
// in the same instant after an outage. The backoff starts again only once a socket has proven
// itself (its first message, or open for SETTLED_MS): a socket the server accepts and closes at
// once (1013 for a disabled camera, the cluster relay's 4502/4503 with no owner) used to reset
// it on open and retried every 0.5 s for good (119 handshakes a minute per socket, each an
// audit entry in raw mode).
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10000;
const RETRY_JITTER = 0.2;
const SETTLED_MS = 5000;

// After a handshake refused without a close code the page asks /api/v1/auth/me whether its
// session is gone: one question for all the page's sockets (at most one in flight, at most one
// per SESSION_CHECK_MS), whose 401 ends them all. Each socket asked on its own before: ~11
// requests a second from a 32-tile wall during an outage, for good where handshakes fail for
// another reason (a proxy without WebSocket upgrades) and /auth/me answers 200.
const SESSION_CHECK_MS = 10000;
const session = { asking: false, askedAt: -Infinity, ended: false };
function checkSession() {
  if (session.asking || session.ended || Date.now() - session.askedAt < SESSION_CHECK_MS) return;
  session.asking = true;
  session.askedAt = Date.now();
  fetch("/api/v1/auth/me", { credentials: "same-origin" })
    .then((answer) => { if (answer.status === 401 && !session.ended) { session.ended = true; toLogin(); } })
    .catch(() => {})
    .finally(() => { session.asking = false; });
}

/**
 * A WebSocket to this server that reconnects with backoff (RETRY_* above). A close that trying
 * again cannot mend ends it: 4401 (the session or token is gone: expired, logged out, revoked)
 * sends the browser to log in; 4403 (not allowed) and 4404 (no such camera) call
 * onRefused(code, reason) (onState(false) without it). Before, those read as a network failure,
 * retried for good. reconnect() drops the open connection and connects again the way a network
 * failure does.
 */
export function liveSocket(path, { onMessage, onState, onRefused, binaryType = "blob" }) {
  let socket;
  let delay = RETRY_FIRST_MS;
  let closed = false;
  const open = () => {
    if (closed || session.ended) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${path}`);
    socket.binaryType = binaryType;
    let opened = false;
    let settled = null; // the timer that resets the backoff once the socket stayed open
    const settle = () => { clearTimeout(settled); settled = null; delay = RETRY_FIRST_MS; };
    socket.onopen = () => { opened = true; settled = setTimeout(settle, SETTLED_MS); onState?.(true); };
    socket.onmessage = (event) => { if (settled !== null) settle(); onMessage(event); };
    socket.onclose = (event) => {
      clearTimeout(settled);
      settled = null;
      if (!closed && event.code === 4401) { closed = true; toLogin(); return; }
      // Refused at the handshake (the browser shows no code): a session that ended while the
      // server was away is refused there, and retrying would say "unreachable" for ever.
      if (!closed && !opened) checkSession();
      if (!closed && (event.code === 4403 || event.code === 4404)) {
        closed = true;
        if (onRefused) onRefused(event.code, event.reason); else onState?.(false);
        return;
      }
      onState?.(false);
      if (!closed) setTimeout(open, delay * (1 - RETRY_JITTER + 2 * RETRY_JITTER * Math.random()));
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    };
  };
  open();
  return {
    close() { closed = true; socket?.close(); },
    reconnect() { if (!closed) socket?.close(); }, // onclose above opens the next one
  };
}

export const STATUS_LABEL = {
  open: "not reviewed", acknowledged: "acknowledged", resolved: "resolved", false_positive: "false positive",
};
