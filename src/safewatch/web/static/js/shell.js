// Every page: log out, the open-incident counter, the live incident feed indicator, one toast per
// burst of new incidents (not one per person in a flood), the optional alarm sound for high
// severity, and the navigation toggle of narrow screens.
//
// After a gap in the incident feed (the socket was down, or the server dropped changes this tab
// was too slow to take and said "resync"), which changes were missed is unknown: a
// "safewatch:resync" event on document then has every page read again what it shows (the open
// badge here, the live page's list, the incident list and page), each through the code that
// loads it.
import { api, attempt, liveSocket, toast } from "./api.js";

document.getElementById("logout")?.addEventListener("click", async () => {
  await attempt(() => api("/api/v1/auth/logout", { method: "POST" }));
  location.href = "/login";
});

const badge = document.getElementById("open-count");
const dot = document.getElementById("feed-state");

async function refreshOpen() {
  try {
    const page = await api("/api/v1/incidents?status=open&limit=1");
    if (badge) {
      badge.textContent = `${page.total} open`;
      badge.classList.toggle("hot", page.total > 0);
    }
  } catch { /* shown by the next refresh */ }
}

refreshOpen();
// A flood of incidents is one toast: openings within TOAST_WINDOW ms are counted together.
const TOAST_WINDOW = 2000;
let burst = [];
let burstTimer = null;
function flushBurst() {
  const [first] = burst;
  if (burst.length === 1) toast(`${first.camera_id}: ${first.message}`, "alert");
  else if (burst.length > 1) {
    const cameras = [...new Set(burst.map((i) => i.camera_id))].join(", ");
    toast(`${burst.length} new incidents (${cameras})`, "alert");
  }
  burst = [];
  burstTimer = null;
}

// Optional sound for high and critical severity: a preference of this browser (localStorage), a
// short two-tone beep made with Web Audio (no file to fetch). Browsers allow sound only after the
// user interacted with the page; ticking the box is such an interaction.
export const SOUND_KEY = "safewatch.sound";
let audio = null;
let lastBeep = 0;
function beep() {
  if (localStorage.getItem(SOUND_KEY) !== "on" || Date.now() - lastBeep < 3000) return;
  lastBeep = Date.now();
  try {
    audio ??= new AudioContext();
    const now = audio.currentTime;
    for (const [offset, freq] of [[0, 880], [0.18, 660]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.15, now + offset);
      gain.gain.exponentialRampToValueAtTime(0.001, now + offset + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + offset);
      osc.stop(now + offset + 0.17);
    }
    document.body.dataset.beeps = String(+(document.body.dataset.beeps || 0) + 1);
  } catch { /* no audio device */ }
}
const soundBox = document.getElementById("sound");
if (soundBox) {
  soundBox.checked = localStorage.getItem(SOUND_KEY) === "on";
  soundBox.addEventListener("change", () => {
    localStorage.setItem(SOUND_KEY, soundBox.checked ? "on" : "off");
    if (soundBox.checked) { audio ??= new AudioContext(); audio.resume?.(); }
  });
}

// Narrow screens: the navigation collapses behind a button.
const navToggle = document.getElementById("nav-toggle");
navToggle?.addEventListener("click", () => {
  const open = navToggle.getAttribute("aria-expanded") !== "true";
  navToggle.setAttribute("aria-expanded", String(open));
  document.body.classList.toggle("nav-open", open);
});

const resync = () => document.dispatchEvent(new CustomEvent("safewatch:resync"));
document.addEventListener("safewatch:resync", refreshOpen);

let pending = null;
let down = false;
liveSocket("/api/v1/ws/incidents", {
  onState(up) {
    dot?.classList.toggle("up", up);
    dot?.setAttribute("title", up ? "Live feed connected" : "Live feed reconnecting");
    if (up && down) resync();  // what happened while it was down never comes over it
    down = !up;
  },
  onMessage(event) {
    const message = JSON.parse(event.data);
    if (message.type === "resync") { resync(); return; }
    if (message.type !== "incident") return;
    document.dispatchEvent(new CustomEvent("safewatch:incident", { detail: message }));
    if (message.kind === "opened") {
      burst.push(message.incident);
      burstTimer ??= setTimeout(flushBurst, TOAST_WINDOW);
      if (["high", "critical"].includes(message.incident.severity)) beep();
    }
    clearTimeout(pending);
    pending = setTimeout(refreshOpen, 300);
  },
});
