// Every page: log out, the open-incident counter and the live incident feed indicator.
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
let pending = null;
liveSocket("/api/v1/ws/incidents", {
  onState(up) { dot?.classList.toggle("up", up); dot?.setAttribute("title", up ? "Live feed connected" : "Live feed reconnecting"); },
  onMessage(event) {
    const message = JSON.parse(event.data);
    if (message.type !== "incident") return;
    document.dispatchEvent(new CustomEvent("safewatch:incident", { detail: message }));
    if (message.kind === "opened") toast(`${message.incident.camera_id}: ${message.incident.message}`, "alert");
    clearTimeout(pending);
    pending = setTimeout(refreshOpen, 300);
  },
});
