// Rules page side panel (issue 8): draft rules in plain words with the site's language model, or,
// when the site has none, build one with a structured form. Either way the server validates the
// rule as a whole set and keeps the draft; the page shows its YAML, diff and plain-words meaning,
// and "Save" sends only the draft's id. Operators and admins only (viewers see no panel).
import { api, can, el, toast } from "./api.js";

const css = el("link", { rel: "stylesheet", href: "/static/css/rule_drafts.css" });
document.head.append(css);

/** A unified diff with added, removed and hunk lines marked. */
function diffView(diff) {
  const lines = diff.split("\n").filter((line, i, all) => line || i < all.length - 1);
  return el("pre", { class: "diff" }, lines.map((line) => {
    const kind = line.startsWith("@@") ? "hunk"
      : line.startsWith("+") && !line.startsWith("+++") ? "add"
        : line.startsWith("-") && !line.startsWith("---") ? "del" : "";
    return el("span", { class: kind }, `${line}\n`);
  }));
}

/** After a draft is saved: the page's "Rules in force" (the saved rule is in force now), and the
 * editor's text when it shows the file just saved (and has no unsaved edits). */
async function refreshEditor(editor, file, before) {
  if (!editor) return;
  editor.refresh?.();
  if (editor.file() !== file || editor.getText() !== before) return;
  await editor.reload(); // the text and its version (ETag), so the editor's next save is not stale
}

/** One draft: verdict, plain words, warnings, the model's notes, errors, YAML, diff and (if valid) Save. */
function draftView(draft, editor) {
  const box = el("div", { class: `draft ${draft.valid ? "valid" : "invalid"}` });
  const rounds = `${draft.rounds} round${draft.rounds === 1 ? "" : "s"}`;
  box.append(el("div", { class: "small muted" }, draft.valid
    ? `Valid draft for ${draft.target}${draft.model && draft.model !== "form" ? ` (${draft.model}, ${rounds})` : ""}`
    : `No valid draft${draft.rounds ? ` after ${rounds}` : ""}: nothing can be saved`));
  if (draft.explanation.length) box.append(el("ul", {}, draft.explanation.map((s) => el("li", {}, s))));
  if (draft.warnings.length) box.append(el("ul", { class: "warn" }, draft.warnings.map((s) => el("li", {}, `Check: ${s}`))));
  // The model's own words (what it assumed, e.g. a pixel guess for metres): shown, as text.
  if (draft.assumptions) box.append(el("p", { class: "warn small" }, `The model says: ${draft.assumptions}`));
  if (draft.errors.length) box.append(el("ul", { class: "bad" }, draft.errors.map((s) => el("li", {}, s))));
  if (draft.yaml) box.append(el("details", { open: draft.valid }, el("summary", {}, "YAML"), el("pre", {}, draft.yaml)));
  if (draft.diff) box.append(el("details", {}, el("summary", {}, `Diff of ${draft.target}`), diffView(draft.diff)));
  if (draft.valid && draft.id) {
    const button = el("button", { class: "primary", type: "button" }, `Save to ${draft.target}`);
    button.addEventListener("click", async () => {
      button.disabled = true;
      const before = editor?.getText();
      try {
        const saved = await api(`/api/v1/rule-drafts/${encodeURIComponent(draft.id)}/save`, { method: "POST" });
        button.textContent = `Saved to ${saved.file}`;
        toast(`Saved to ${saved.file}; rules reloaded (generation ${saved.status.generation})`, "ok");
        await refreshEditor(editor, saved.file, before);
      } catch (error) {
        button.disabled = false;
        if (error.status !== 401) toast(error.message, "error");
      }
    });
    box.append(button);
  }
  return box;
}

/** A refusal or an endpoint error, with its reasons. */
function errorView(error) {
  const reasons = (error.details || []).map((d) => d.message);
  return el("div", { class: "draft refused" },
    el("div", { class: "bad" }, error.message),
    reasons.length > 1 ? el("ul", {}, reasons.map((r) => el("li", {}, r))) : null);
}

function targetSelect(setup) {
  const names = [...new Set([setup.default_target, ...setup.files])];
  return el("select", { name: "target" }, names.map((n) => el("option", { value: n }, n)));
}

function chatPanel(setup, editor) {
  const log = el("ol", { class: "log", "aria-live": "polite" });
  const request = el("textarea", { name: "request", required: true, maxlength: 2000,
    placeholder: "e.g. no one in the press area without a hard hat during the night shift" });
  const target = targetSelect(setup);
  const allow = el("input", { name: "allow_modify", placeholder: "rule ids, comma-separated" });
  const submit = el("button", { class: "primary", type: "submit" }, "Draft");
  const history = [];
  const form = el("form", {},
    request,
    el("div", { class: "row" }, el("label", { class: "inline" }, "File", target), el("span", { class: "spacer" }), submit),
    // Changing existing rules needs the admin role (the server refuses it for operators).
    can("admin") ? el("details", {}, el("summary", { class: "small muted" }, "Change existing rules"),
      el("label", {}, "Ids the draft may change or disable (name them in the request too)", allow)) : null);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = request.value.trim();
    if (!text) return;
    const turn = el("li", {}, el("div", { class: "asked" }, text));
    const waiting = el("div", { class: "small muted" }, "Drafting… a local model may take a minute.");
    turn.append(waiting);
    log.append(turn);
    turn.scrollIntoView({ block: "end" });
    submit.disabled = true;
    try {
      const draft = await api("/api/v1/rule-drafts", { method: "POST", body: {
        request: text,
        target: target.value,
        allow_modify: allow.value.split(",").map((s) => s.trim()).filter(Boolean),
        history: history.slice(-5),
      } });
      waiting.replaceWith(draftView(draft, editor));
      history.push({ request: text, draft_yaml: draft.yaml });
      request.value = "";
    } catch (error) {
      if (error.status === 401) return;
      waiting.replaceWith(errorView(error));
    } finally {
      submit.disabled = false;
      turn.scrollIntoView({ block: "end" });
    }
  });
  return el("div", { class: "drafts" },
    el("h3", {}, "Draft rules in plain words", el("span", { class: "small muted" }, setup.model)),
    el("p", { class: "small muted" }, "The draft is validated against the whole rule set; nothing is saved until you press Save."),
    log, form);
}

// The structured form: which fields each kind takes, and how each field is entered.
const FIELDS = {
  ppe: ["require", "objects", "zones", "min_duration"],
  zone_intrusion: ["zone", "objects", "min_duration"],
  dwell: ["zone", "objects", "max_time"],
  line_crossing: ["line", "objects", "direction"],
  proximity: ["subjects", "objects", "machine_zone", "max_distance", "zones"],
  occupancy: ["zone", "objects", "max_count", "min_count"],
  zone_clear: ["zone", "objects", "max_time"],
  speed: ["objects", "max_speed", "zones"],
};
const TEXT_HINTS = {
  min_duration: "e.g. 2s", max_time: "e.g. 30s or 5m", max_distance: "2m (calibrated) or 150px",
  max_speed: "e.g. 10km/h (calibrated cameras)",
};

function choices(name, options, checked = []) {
  return el("fieldset", { dataset: { field: name, type: "many" } }, el("legend", {}, name),
    el("div", { class: "choices" }, options.map((option) => el("label", { class: "inline" },
      el("input", { type: "checkbox", value: option, checked: checked.includes(option) }), option))));
}

function single(name, options) {
  return el("label", { dataset: { field: name, type: "one" } }, name,
    el("select", {}, options.map((o) => el("option", { value: o }, o || "—"))));
}

function widget(name, setup) {
  switch (name) {
    case "require": return choices(name, setup.ppe_items);
    case "objects": return choices(name, setup.objects, setup.objects.includes("person") ? ["person"] : []);
    case "subjects": return choices(name, setup.objects, setup.objects.includes("person") ? ["person"] : []);
    case "zones": return choices(name, setup.zones);
    case "zone": return single(name, setup.zones);
    case "line": return single(name, setup.lines);
    case "machine_zone": return single(name, ["", ...setup.zones]);
    case "direction": return single(name, ["any", "left_to_right", "right_to_left"]);
    case "max_count": case "min_count":
      return el("label", { dataset: { field: name, type: "int" } }, name, el("input", { type: "number", min: 0 }));
    default:
      return el("label", { dataset: { field: name, type: "text" } }, name, el("input", { placeholder: TEXT_HINTS[name] || "" }));
  }
}

/** The rule the form describes, leaving out what was left empty (defaults apply). */
function ruleOf(form) {
  const rule = {};
  for (const box of form.querySelectorAll("[data-field]")) {
    const { field, type } = box.dataset;
    let value;
    if (type === "many") value = [...box.querySelectorAll("input:checked")].map((i) => i.value);
    else if (type === "int") value = box.querySelector("input").value === "" ? undefined : Number(box.querySelector("input").value);
    else value = (box.querySelector("input, select, textarea").value || "").trim();
    if (value === undefined || value === "" || (Array.isArray(value) && value.length === 0)) continue;
    if (field.startsWith("schedule.")) {
      rule.schedule = rule.schedule || {};
      rule.schedule[field.slice(9)] = value;
    } else rule[field] = value;
  }
  if (rule.schedule && (rule.schedule.start || rule.schedule.end)) {
    rule.schedule.between = [rule.schedule.start || "00:00", rule.schedule.end || "24:00"];
  }
  if (rule.schedule) { delete rule.schedule.start; delete rule.schedule.end; }
  return rule;
}

function formPanel(setup, editor) {
  const kind = el("select", {}, setup.kinds.map((k) => el("option", { value: k }, k)));
  const specific = el("div", { class: "drafts-fields" });
  const result = el("div");
  const target = targetSelect(setup);
  const showFields = () => specific.replaceChildren(...FIELDS[kind.value].map((f) => widget(f, setup)));
  kind.addEventListener("change", showFields);
  showFields();
  const form = el("form", {},
    el("label", { dataset: { field: "id", type: "text" } }, "id", el("input", { required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]*", maxlength: 64 })),
    el("label", { dataset: { field: "kind", type: "one" } }, "kind", kind),
    el("label", { dataset: { field: "description", type: "text" } }, "description", el("input", {})),
    el("label", { dataset: { field: "severity", type: "one" } }, "severity",
      el("select", {}, setup.severities.map((s) => el("option", { value: s, selected: s === "medium" }, s)))),
    choices("cameras", setup.cameras),
    specific,
    el("fieldset", {}, el("legend", {}, "schedule (site time; empty: always)"),
      choices("schedule.days", setup.weekdays),
      el("div", { class: "row" },
        el("label", { dataset: { field: "schedule.start", type: "text" } }, "from", el("input", { type: "time" })),
        el("label", { dataset: { field: "schedule.end", type: "text" } }, "to", el("input", { type: "time" })))),
    el("label", { class: "inline" }, "File", target),
    el("button", { class: "primary", type: "submit" }, "Check rule"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const draft = await api("/api/v1/rule-drafts/form", { method: "POST", body: {
        rule: ruleOf(form), target: target.value,
      } });
      result.replaceChildren(draftView(draft, editor));
    } catch (error) {
      if (error.status !== 401) result.replaceChildren(errorView(error));
    }
  });
  return el("div", { class: "drafts" },
    el("h3", {}, "New rule"),
    el("p", { class: "small muted" }, "No language model is configured for this site (see docs/llm.md); build the rule here. It is validated against the whole rule set before it can be saved."),
    form, result);
}

document.addEventListener("safewatch:rules-ready", async (event) => {
  const { panel, editor } = event.detail || {};
  if (!panel || !can("operator")) return;
  let setup;
  try {
    setup = await api("/api/v1/rule-drafts/setup");
  } catch {
    return; // no drafting on this server
  }
  panel.replaceChildren(setup.llm ? chatPanel(setup, editor) : formPanel(setup, editor));
  panel.hidden = false;
});
