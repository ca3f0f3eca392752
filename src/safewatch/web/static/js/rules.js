// Rules: YAML editor with validation messages (file:line), enable/disable, reload state.
//
// Extension point (issue 8, natural-language rule builder): after the page is ready this module
// dispatches "safewatch:rules-ready" on document with detail.editor = {getText(), setText(text),
// validate(), save(), file(), reload(), refresh()} (refresh: read the rules in force, the
// reload state and the list of rule files again, after a change made elsewhere); a panel module
// fills #rules-side-panel and un-hides it.
//
// A save sends the version the text was loaded as (If-Match: the file's ETag): if another admin
// (or a rule switch, a zone drawn, a draft saved) changed the file meanwhile, the server answers
// 409 and nothing is overwritten; the editor keeps the text so the edit can be re-applied.
import { api, attempt, can, el, fmtTime, pageData, toast } from "./api.js";

const { files = [] } = pageData();
const fileSelect = document.getElementById("file");
const editor = document.getElementById("editor");
const problems = document.getElementById("problems");
const state = document.getElementById("reload-state");
for (const name of files) fileSelect.append(el("option", { value: name }, name));
let saved = "";
let version = null; // the ETag of the text last loaded or saved
let loaded = ""; // the file whose text the editor holds (the dropdown names it, too)

function showProblems(result) {
  if (result.ok) {
    problems.replaceChildren(el("li", { class: "ok" }, `Valid: ${result.rules} rules, ${result.zones} zones, ${result.lines} lines in the whole set.`));
    return;
  }
  problems.replaceChildren(...result.errors.map((e) => el("li", {
    onclick: () => e.line && jump(e.line),
    dataset: { line: e.line ?? "" },
  }, `${(e.file || "").split("/").pop()}${e.line ? `:${e.line}` : ""}: ${e.field ? `${e.field}: ` : ""}${e.message}`)));
}

function jump(line) {
  const lines = editor.value.split("\n");
  const start = lines.slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
  editor.focus();
  editor.setSelectionRange(start, start + (lines[line - 1] || "").length);
  editor.scrollTop = Math.max(0, (line - 5) * 18);
}

async function load() {
  if (!fileSelect.value) return;
  const name = fileSelect.value;
  const file = await attempt(() => api(`/api/v1/rules/files/${encodeURIComponent(name)}`));
  if (file) { editor.value = file.text; saved = file.text; version = file.etag; loaded = name; problems.replaceChildren(); }
  else if (loaded) fileSelect.value = loaded; // not loaded: the editor still holds that file
}

async function validate() {
  const result = await attempt(() => api(`/api/v1/rules/files/${encodeURIComponent(fileSelect.value)}/validate`, { method: "POST", body: { text: editor.value } }));
  if (result) showProblems(result);
  return result;
}

async function save() {
  try {
    const result = await api(`/api/v1/rules/files/${encodeURIComponent(fileSelect.value)}`, {
      method: "PUT", body: { text: editor.value }, headers: version ? { "If-Match": version } : {},
    });
    saved = editor.value;
    version = result.etag;
    showProblems(result.validation);
    toast(`Saved ${result.file}: generation ${result.status.generation}`, "ok");
    refresh();
    return result;
  } catch (error) {
    if (error.code === "invalid_config") showProblems({ ok: false, errors: error.details });
    if (error.status === 409) {
      // Changed on the server since it was loaded: say so where the problems are listed and keep
      // the text (copy it, reload the file, re-apply the edit).
      problems.replaceChildren(el("li", {}, `Not saved: ${error.message} `,
        el("button", { type: "button", onclick: () => confirm("Load the current text? Your edit is discarded (copy it first).") && load() }, "Load current text")));
    }
    toast(error.message, "error");
    return null;
  }
}

/** The dropdown lists the rule files there are now: a file made elsewhere (a draft saved to a
 *  new file, whose panel calls refresh) was not in it until the page was reloaded. The file
 *  the editor holds stays listed even if it was removed meanwhile: its text is still here. */
function listFiles(names) {
  const shown = fileSelect.value;
  const wanted = !shown || names.includes(shown) ? names : [...names, shown];
  if (wanted.join("\n") === [...fileSelect.options].map((o) => o.value).join("\n")) return;
  fileSelect.replaceChildren(...wanted.map((name) => el("option", { value: name }, name)));
  fileSelect.value = shown;
}

async function refresh() {
  const [data, names] = await Promise.all([attempt(() => api("/api/v1/rules")), attempt(() => api("/api/v1/rules/files"))]);
  if (names) listFiles(names);
  if (!data) return;
  const s = data.status;
  state.textContent = `${s.ok ? "✓" : "✗"} generation ${s.generation} · ${s.message} · ${fmtTime(s.at)}`;
  state.className = s.ok ? "muted" : "error";
  // Protection that disappeared (rules dropped, cameras no rule watches): flagged until fixed.
  const protection = document.getElementById("protection");
  protection.replaceChildren(...(s.warnings || []).map((w) => el("li", {}, `⚠ ${w}`)));
  // Dropped rules stay flagged (and /readyz degraded) until an admin says the removal was meant.
  if ((s.dropped || []).length && can("admin")) {
    protection.append(el("li", {}, el("button", { type: "button", id: "acknowledge-dropped",
      onclick: async () => {
        if (!confirm(`Acknowledge that ${s.dropped.join(", ")} ${s.dropped.length > 1 ? "are" : "is"} removed on purpose?`)) return;
        if (await attempt(() => api("/api/v1/rules/dropped/acknowledge", { method: "POST", body: { rules: s.dropped } }), "Removal acknowledged")) refresh();
      } }, `Acknowledge removal of ${s.dropped.length} rule(s)`)));
  }
  protection.hidden = !(s.warnings || []).length;
  document.querySelector("#rule-table tbody").replaceChildren(...data.rules.map((r) => el("tr", { class: r.enabled ? "" : "muted" },
    el("td", {}, el("input", { type: "checkbox", class: "switch", "aria-label": `Rule ${r.id} enabled`, checked: r.enabled, disabled: !can("admin"), dataset: { rule: r.id },
      onchange: async (event) => {
        const done = await attempt(() => api(`/api/v1/rules/${encodeURIComponent(r.id)}/enabled`, { method: "PUT", body: { enabled: event.target.checked } }),
          `${r.id} ${event.target.checked ? "enabled" : "disabled"}`);
        // Unsaved edits stay in the editor (their save will then be refused as stale, 409).
        if (done) { if (editor.value === saved) await load(); refresh(); } else event.target.checked = !event.target.checked;
      } })),
    el("td", {}, r.id), el("td", {}, r.kind), el("td", {}, el("span", { class: `sev sev-${r.severity}` }, r.severity)),
    el("td", {}, r.explanation))));
}

fileSelect.addEventListener("change", () => {
  // Kept: the dropdown goes back to the file in the editor, since validate, save and "Test this
  // change" use the dropdown's name (the old file's text was saved under the new file's name).
  if (editor.value !== saved && !confirm("Discard unsaved changes?")) { fileSelect.value = loaded; return; }
  load();
});
document.getElementById("validate").addEventListener("click", validate);
document.getElementById("save").addEventListener("click", save);
document.getElementById("reload").addEventListener("click", async () => {
  if (await attempt(() => api("/api/v1/rules/reload", { method: "POST" }), "Reloaded")) refresh();
});
editor.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "s") { event.preventDefault(); save(); }
  if ((event.ctrlKey || event.metaKey) && event.key === "Enter") { event.preventDefault(); validate(); }
  if (event.key === "Tab") {
    event.preventDefault();
    const { selectionStart: s, selectionEnd: e } = editor;
    editor.setRangeText("  ", s, e, "end");
  }
});
window.addEventListener("beforeunload", (event) => { if (editor.value !== saved) event.preventDefault(); });
if (!can("admin")) { editor.readOnly = true; document.getElementById("save").disabled = true; document.getElementById("reload").disabled = true; }

await load();
await refresh();
document.dispatchEvent(new CustomEvent("safewatch:rules-ready", {
  detail: {
    editor: { getText: () => editor.value, setText: (text) => { editor.value = text; }, validate, save, file: () => fileSelect.value, reload: load, refresh },
    files,
    panel: document.getElementById("rules-side-panel"),
  },
}));
