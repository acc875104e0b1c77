// Services: the list, and per service its options (editable), revisions, handlers and a form
// that invokes a handler through the admin origin's door to the ingress.
import { api, clear, errorBox, fmtTime, get, h, ingressAuthHeaders, invLink, table, toast } from "./lib.js";

const OPTIONS = [
  ["idempotency_retention", "Idempotency retention"],
  ["workflow_completion_retention", "Workflow completion retention"],
  ["journal_retention", "Journal retention"],
  ["inactivity_timeout", "Inactivity timeout"],
  ["abort_timeout", "Abort timeout"],
];
const PRIMITIVE = { string: "text", integer: "number", number: "number", boolean: "checkbox" };

async function listPage(root) {
  const [svcs, deps] = await Promise.all([get("/services"), get("/deployments")]);
  const uri = Object.fromEntries(deps.deployments.map((d) => [d.id, d.uri]));
  const rows = svcs.services.slice().sort((a, b) => a.name.localeCompare(b.name));
  clear(root, h("div", { class: "page-head" }, h("h1", {}, "Services"), h("a", { class: "button", href: "/ui/deployments?register=1" }, "+ Deployment")),
    table([
      { label: "Service", cell: (s) => h("a", { href: `/ui/services/${encodeURIComponent(s.name)}` }, s.name) },
      { label: "Type", cell: (s) => h("span", { class: `ty ty-${s.ty}` }, s.ty) },
      { label: "Revision", cell: (s) => String(s.revision) },
      { label: "Handlers", cell: (s) => s.handlers.map((x) => x.name).join(", ") },
      { label: "Public", cell: (s) => (s.public ? "yes" : "no") },
      { label: "Deployment", cell: (s) => h("span", { class: "mono" }, uri[s.deployment_id] || s.deployment_id) },
    ], rows, (s) => ({ "data-service": s.name })));
}

function optionsForm(svc, reload) {
  const inputs = {};
  const pub = h("input", { type: "checkbox", name: "public", checked: svc.public });
  const form = h("form", { class: "form-grid", id: "service-options" },
    h("label", { class: "check" }, pub, "Public (callable through the ingress)"),
    OPTIONS.filter(([k]) => k !== "workflow_completion_retention" || svc.ty === "Workflow").map(([k, label]) =>
      h("label", {}, label, inputs[k] = h("input", { name: k, value: svc[k] || "", size: 12 }))),
    h("button", { type: "submit" }, "Save options"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {};
    if (pub.checked !== svc.public) body.public = pub.checked;
    for (const [k, input] of Object.entries(inputs)) if (input.value.trim() && input.value.trim() !== svc[k]) body[k] = input.value.trim();
    if (Object.keys(body).length === 0) { toast("Nothing changed"); return; }
    try {
      await api("PATCH", `/services/${encodeURIComponent(svc.name)}`, body);
      toast("Service options saved");
      reload();
    } catch (e) { toast(`Saving failed: ${e.message}`, "error"); }
  });
  return form;
}

// Input fields from a handler's JSON schema: one for a primitive, one per property of a flat
// object; null when the schema is richer (the form then takes raw JSON).
function schemaFields(schema) {
  if (!schema || typeof schema !== "object") return null;
  if (PRIMITIVE[schema.type]) return { kind: "primitive", fields: [["value", schema.type]] };
  if (schema.type === "object" && schema.properties) {
    const fields = Object.entries(schema.properties).map(([k, p]) => [k, p.type]);
    if (fields.every(([, t]) => PRIMITIVE[t])) return { kind: "object", fields };
  }
  return null;
}

function readField(input, type) {
  if (type === "boolean") return input.checked;
  if (type === "integer" || type === "number") return input.value === "" ? null : Number(input.value);
  return input.value;
}

function invokeForm(svc, query) {
  const keyed = svc.ty !== "Service";
  const handler = h("select", { name: "handler", id: "invoke-handler" }, svc.handlers.map((x) => h("option", { value: x.name }, x.name)));
  const key = keyed ? h("input", { name: "key", id: "invoke-key", value: query.get("key") || "", placeholder: "key" }) : null;
  const fieldsBox = h("div", { class: "form-grid", id: "invoke-fields" });
  const raw = h("textarea", { id: "invoke-body", rows: 4, placeholder: "JSON body" });
  const ik = h("input", { id: "invoke-ik", placeholder: "idempotency key (optional)" });
  const mode = h("select", { id: "invoke-mode" }, h("option", { value: "call" }, "Call and wait for the result"), h("option", { value: "send" }, "Send (one way)"));
  const delay = h("input", { id: "invoke-delay", placeholder: "delay, e.g. 10s (send only)", size: 14 });
  const out = h("div", { id: "invoke-result" });
  let fields = null;
  const inputs = {};
  const pick = () => {
    const hd = svc.handlers.find((x) => x.name === handler.value);
    fields = schemaFields(hd?.input_json_schema);
    clear(fieldsBox);
    for (const k of Object.keys(inputs)) delete inputs[k];
    raw.hidden = !!fields || hd?.input_description === "none";
    if (fields) for (const [k, t] of fields.fields) {
      inputs[k] = h("input", { type: PRIMITIVE[t], name: k, "data-field": k });
      fieldsBox.append(h("label", {}, fields.kind === "primitive" ? `Input (${t})` : `${k} (${t})`, inputs[k]));
    }
    fieldsBox.append(h("span", { class: "muted" }, `input: ${hd?.input_description || "?"}, output: ${hd?.output_description || "?"}`));
  };
  handler.addEventListener("change", pick);
  pick();
  const form = h("form", { class: "panel", id: "invoke" }, h("h3", {}, "Invoke a handler"),
    h("div", { class: "form-grid" }, h("label", {}, "Handler", handler), key ? h("label", {}, "Key", key) : null, h("label", {}, "Mode", mode), h("label", {}, "Delay", delay), h("label", {}, "Idempotency key", ik)),
    fieldsBox, raw, h("div", { class: "buttons" }, h("button", { type: "submit" }, "Invoke")), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let body;
    try {
      if (fields && fields.kind === "primitive") body = JSON.stringify(readField(inputs.value, fields.fields[0][1]));
      else if (fields) body = JSON.stringify(Object.fromEntries(fields.fields.map(([k, t]) => [k, readField(inputs[k], t)])));
      else body = raw.hidden ? undefined : raw.value.trim() ? JSON.stringify(JSON.parse(raw.value)) : undefined;
    } catch (e) { clear(out, errorBox(`The body is not JSON: ${e.message}`)); return; }
    const path = [svc.name, ...(keyed ? [key.value] : []), handler.value].map(encodeURIComponent).join("/");
    const send = mode.value === "send";
    const url = `/ui/api/ingress/${path}${send ? "/send" : ""}${send && delay.value ? `?delay=${encodeURIComponent(delay.value)}` : ""}`;
    const headers = ingressAuthHeaders();
    if (body !== undefined) headers["content-type"] = "application/json";
    if (ik.value) headers["idempotency-key"] = ik.value;
    clear(out, h("p", { class: "muted" }, "Waiting…"));
    const resp = await fetch(url, { method: "POST", headers, body });
    const text = await resp.text();
    let id = resp.headers.get("x-restate-id");
    if (!id && send) { try { id = JSON.parse(text).invocationId; } catch { id = null; } }
    clear(out, h("div", { class: resp.ok ? "ok" : "error-box" },
      h("div", {}, `HTTP ${resp.status}`, id ? [" · ", invLink(id)] : null),
      h("pre", { class: "mono", id: "invoke-output" }, text)));
  });
  return form;
}

export async function page({ root, params, query, variant }) {
  if (variant === "list") return listPage(root);
  const [name] = params;
  const load = async () => {
    let svc;
    try { svc = await get(`/services/${encodeURIComponent(name)}`); } catch (e) {
      clear(root, h("h1", {}, name), errorBox(e));
      return;
    }
    const deps = (await get("/deployments")).deployments;
    const revisions = deps.flatMap((d) => d.services.filter((s) => s.name === name).map((s) => ({ ...s, dep: d })))
      .sort((a, b) => b.revision - a.revision);
    clear(root,
      h("div", { class: "page-head" }, h("h1", {}, name), h("span", { class: `ty ty-${svc.ty}` }, svc.ty),
        h("a", { class: "button secondary", href: `/ui/invocations?service=${encodeURIComponent(name)}` }, "Invocations"),
        svc.ty !== "Service" ? h("a", { class: "button secondary", href: `/ui/state/${encodeURIComponent(name)}` }, "State") : null),
      h("div", { class: "cards" },
        h("div", { class: "panel" }, h("h3", {}, "Options"), optionsForm(svc, load)),
        h("div", { class: "panel" }, h("h3", {}, "Revisions"),
          table([
            { label: "Revision", cell: (r) => h("span", {}, String(r.revision), r.revision === svc.revision ? h("span", { class: "chip" }, "current") : null) },
            { label: "Deployment", cell: (r) => h("span", { class: "mono" }, r.dep.id) },
            { label: "Endpoint", cell: (r) => r.dep.uri },
            { label: "Registered", cell: (r) => fmtTime(r.dep.created_at) },
          ], revisions, (r) => ({ "data-revision": r.revision })))),
      h("section", { class: "section" }, h("h2", {}, "Handlers"),
        table([
          { label: "Handler", cell: (x) => x.name },
          { label: "Type", cell: (x) => x.ty || "" },
          { label: "Input", cell: (x) => x.input_description },
          { label: "Output", cell: (x) => x.output_description },
          { label: "Retry policy", cell: (x) => x.retry_policy ? Object.entries(x.retry_policy).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${k}: ${v}`).join(", ") : "" },
        ], svc.handlers, (x) => ({ "data-handler": x.name }))),
      h("section", { class: "section" }, invokeForm(svc, query)));
    if (location.hash === "#invoke") document.getElementById("invoke")?.scrollIntoView();
  };
  await load();
  return {};
}
