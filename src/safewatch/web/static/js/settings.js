// Settings: the site's summary, my API tokens, users and the audit log (admins).
import { api, attempt, can, el, fmtTime, pageData } from "./api.js";

const { summary = {} } = pageData();
document.getElementById("summary").replaceChildren(
  ...Object.entries(summary).flatMap(([k, v]) => [el("dt", {}, k.replace(/_/g, " ")), el("dd", {}, String(v))]));
for (const section of document.querySelectorAll("[data-role-min]")) section.hidden = !can(section.dataset.roleMin);

async function tokens() {
  const list = await attempt(() => api("/api/v1/tokens"));
  if (!list) return;
  document.querySelector("#tokens tbody").replaceChildren(...list.map((t) => el("tr", {},
    el("td", {}, t.name), el("td", {}, t.username), el("td", {}, el("code", {}, `${t.prefix}…`)),
    el("td", {}, fmtTime(t.created_at)), el("td", {}, t.revoked_at ? "revoked" : fmtTime(t.last_used_at)),
    el("td", {}, t.revoked_at ? "" : el("button", { class: "danger", onclick: async () => {
      if (await attempt(() => api(`/api/v1/tokens/${t.id}`, { method: "DELETE" }), "Token revoked")) tokens();
    } }, "Revoke")))));
}
document.getElementById("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = document.getElementById("token-name").value.trim();
  const issued = await attempt(() => api("/api/v1/tokens", { method: "POST", body: { name } }));
  if (!issued) return;
  const box = document.getElementById("new-token");
  box.hidden = false;
  box.textContent = `${issued.token}  (copy it now: it is not shown again)`;
  tokens();
});

async function users() {
  const list = await attempt(() => api("/api/v1/users"));
  if (!list) return;
  document.querySelector("#users tbody").replaceChildren(...list.map((u) => {
    const roleSelect = el("select", { "aria-label": `Role of ${u.username}`, onchange: async () => {
      await attempt(() => api(`/api/v1/users/${u.username}`, { method: "PATCH", body: { role: roleSelect.value } }), "Role changed");
      users();
    } }, ...["viewer", "operator", "admin"].map((r) => el("option", { selected: r === u.role }, r)));
    return el("tr", {}, el("td", {}, u.username), el("td", {}, roleSelect),
      el("td", {}, el("input", { type: "checkbox", "aria-label": `${u.username} active`, checked: u.active, onchange: async (e) => {
        await attempt(() => api(`/api/v1/users/${u.username}`, { method: "PATCH", body: { active: e.target.checked } }), "Saved");
        users();
      } })),
      el("td", {}, fmtTime(u.last_login_at)),
      el("td", {}, el("button", { class: "danger", onclick: async () => {
        if (!confirm(`Remove ${u.username}?`)) return;
        if (await attempt(() => api(`/api/v1/users/${u.username}`, { method: "DELETE" }), "User removed") !== undefined) users();
      } }, "Remove")));
  }));
}
document.getElementById("user-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { username: document.getElementById("u-name").value.trim(), password: document.getElementById("u-pass").value, role: document.getElementById("u-role").value };
  if (await attempt(() => api("/api/v1/users", { method: "POST", body }), `User ${body.username} added`)) { event.target.reset(); users(); }
});

async function auditLog() {
  const page = await attempt(() => api("/api/v1/audit-log?limit=100"));
  if (!page) return;
  document.querySelector("#audit-log tbody").replaceChildren(...page.items.map((r) => el("tr", {},
    el("td", { class: "nowrap" }, fmtTime(r.at)), el("td", {}, r.actor || "—"), el("td", {}, r.action),
    el("td", { class: "message" }, r.subject || ""), el("td", {}, r.client || ""))));
}

tokens();
if (can("admin")) { users(); auditLog(); }
