// State of keyed services: per service, its keys with a preview, paged by key; per key, the
// entries with an editor in JSON or raw (base64) mode that replaces the key's whole state.
import { api, b64ToBytes, bytesToB64, clear, errorBox, get, h, hexToBytes, lit, modal, navigate, sql, toast } from "./lib.js";

const KEYS_PAGE = 50;
const PREVIEW_CHARS = 80;

const bytesOf = (v) => (Array.isArray(v) ? Uint8Array.from(v) : hexToBytes(v || ""));

// Entries of one key: [{name, bytes, text (UTF-8 or null)}].
export async function readState(service, key) {
  const rows = await sql(`SELECT key, value FROM state WHERE service_name = ${lit(service)} AND service_key = ${lit(key)} ORDER BY key`);
  const dec = new TextDecoder("utf-8", { fatal: true });
  return rows.map((r) => {
    const bytes = bytesOf(r.value);
    let text = null;
    try { text = dec.decode(bytes); } catch { text = null; }
    return { name: r.key, bytes, text };
  });
}

function asJson(entries) {
  const out = {};
  for (const e of entries) {
    if (e.text === null) return null;
    try { out[e.name] = JSON.parse(e.text); } catch { return null; }
  }
  return out;
}

// The editor dialog; resolves true when the new state was written.
export async function editState(service, key, entries) {
  const json = asJson(entries);
  let mode = json === null ? "base64" : "json";
  const area = h("textarea", { id: "state-text", rows: 14 });
  const fill = () => {
    area.value = mode === "json" ? JSON.stringify(asJson(entries) ?? {}, null, 2)
      : JSON.stringify(Object.fromEntries(entries.map((e) => [e.name, bytesToB64(e.bytes)])), null, 2);
  };
  fill();
  const modeSel = h("select", { id: "state-mode", onchange: (ev) => { mode = ev.target.value; fill(); } },
    h("option", { value: "json", selected: mode === "json", disabled: json === null }, "JSON values"),
    h("option", { value: "base64", selected: mode === "base64" }, "Raw bytes (base64)"));
  const err = h("div", {});
  const body = h("div", {}, h("p", {}, `Replaces all state of ${service}/${key}. One property per state key.`),
    h("label", { class: "inline" }, "Mode ", modeSel), area, err);
  const out = await modal(`Edit state of ${service}/${key}`, body, [{
    label: "Save state", value: "saved",
    run: async () => {
      try {
        const parsed = JSON.parse(area.value);
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("expected a JSON object");
        const enc = new TextEncoder();
        const newState = {};
        for (const [name, v] of Object.entries(parsed)) {
          newState[name] = Array.from(mode === "json" ? enc.encode(JSON.stringify(v)) : b64ToBytes(String(v)));
        }
        await api("POST", `/services/${encodeURIComponent(service)}/state`, { object_key: key, new_state: newState });
        toast("State saved");
        return true;
      } catch (e) {
        clear(err, errorBox(e));
        return false;
      }
    },
  }]);
  return out === "saved";
}

function preview(entries) {
  return entries.map((e) => `${e.name}: ${e.text ?? `<${e.bytes.length} bytes>`}`).join(", ").slice(0, PREVIEW_CHARS);
}

// The state of one key, with an Edit button (used by the object and workflow pages).
export function stateSection(service, key) {
  const el = h("section", { class: "section", id: "state" });
  const load = async () => {
    const entries = await readState(service, key);
    clear(el, h("div", { class: "page-head" }, h("h2", {}, "State"),
      h("button", { type: "button", id: "edit-state", onclick: async () => { if (await editState(service, key, entries)) load(); } }, "Edit state…")),
    entries.length === 0 ? h("p", { class: "muted" }, "No state.") :
      h("table", { class: "grid", id: "state-entries" },
        h("thead", {}, h("tr", {}, h("th", {}, "Key"), h("th", {}, "Value"), h("th", {}, "Size"))),
        h("tbody", {}, entries.map((e) => h("tr", { "data-key": e.name },
          h("td", { class: "mono" }, e.name),
          h("td", { class: "state-value mono" }, e.text ?? h("span", { class: "b64", title: "not UTF-8: shown as base64" }, `base64:${bytesToB64(e.bytes)}`)),
          h("td", {}, `${e.bytes.length} B`))))));
  };
  load().catch((e) => el.append(errorBox(e)));
  return el;
}

async function keyedServices() {
  return (await get("/services")).services.filter((s) => s.ty !== "Service").sort((a, b) => a.name.localeCompare(b.name));
}

async function listPage(root) {
  const svcs = await keyedServices();
  if (svcs.length) { navigate(`/ui/state/${encodeURIComponent(svcs[0].name)}`, true); return; }
  clear(root, h("h1", {}, "State"), h("p", { class: "muted" }, "No virtual objects or workflows registered."));
}

export async function page({ root, params, query, variant }) {
  if (variant === "list") return listPage(root);
  const [service] = params;
  const svcs = await keyedServices();
  const filter = query.get("key") || "";
  const cur = query.get("after") || "";
  const cond = [`service_name = ${lit(service)}`];
  if (filter) cond.push(`service_key LIKE ${lit("%" + filter.replace(/[%_]/g, "") + "%")}`);
  if (cur) cond.push(`service_key > ${lit(cur)}`);
  const keys = (await sql(`SELECT DISTINCT service_key FROM state WHERE ${cond.join(" AND ")} ORDER BY service_key LIMIT ${KEYS_PAGE + 1}`)).map((r) => r.service_key);
  const more = keys.length > KEYS_PAGE;
  const shown = keys.slice(0, KEYS_PAGE);
  const rows = shown.length ? await sql(`SELECT service_key, key, value, value_length FROM state WHERE service_name = ${lit(service)} ` +
    `AND service_key IN (${shown.map(lit).join(", ")}) ORDER BY service_key, key`) : [];
  const dec = new TextDecoder("utf-8", { fatal: true });
  const byKey = new Map(shown.map((k) => [k, []]));
  for (const r of rows) {
    const bytes = bytesOf(r.value);
    let text = null;
    try { text = dec.decode(bytes); } catch { text = null; }
    byKey.get(r.service_key)?.push({ name: r.key, bytes, text });
  }
  const svc = svcs.find((s) => s.name === service);
  const kind = svc?.ty === "Workflow" ? "workflows" : "virtual-objects";
  const form = h("form", { class: "form-grid", id: "state-filter" }, h("input", { name: "key", value: filter, placeholder: "Filter keys" }), h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); const k = new FormData(form).get("key"); navigate(`/ui/state/${encodeURIComponent(service)}${k ? `?key=${encodeURIComponent(k)}` : ""}`); });
  clear(root,
    h("div", { class: "page-head" }, h("h1", {}, `State of ${service}`)),
    h("div", { class: "tabs" }, svcs.map((s) => h("a", { class: `chip${s.name === service ? " active" : ""}`, href: `/ui/state/${encodeURIComponent(s.name)}` }, s.name))),
    form,
    shown.length === 0 ? h("p", { class: "muted", id: "no-state" }, "No keys with state.") :
      h("table", { class: "grid", id: "state-keys" },
        h("thead", {}, h("tr", {}, h("th", {}, "Key"), h("th", {}, "State"), h("th", {}, "Size"), h("th", {}, ""))),
        h("tbody", {}, shown.map((k) => {
          const entries = byKey.get(k);
          return h("tr", { "data-key": k },
            h("td", {}, h("a", { href: `/ui/${kind}/${encodeURIComponent(service)}/${encodeURIComponent(k)}` }, k)),
            h("td", { class: "mono state-preview" }, `{${preview(entries)}}`),
            h("td", {}, `${entries.reduce((a, e) => a + e.bytes.length, 0)} B`),
            h("td", {}, h("button", { type: "button", class: "secondary edit", onclick: async () => {
              if (await editState(service, k, entries)) navigate(location.pathname + location.search, true);
            } }, "Edit…")));
        }))),
    h("div", { class: "pager" },
      cur ? h("a", { class: "button secondary", href: `/ui/state/${encodeURIComponent(service)}${filter ? `?key=${encodeURIComponent(filter)}` : ""}` }, "« First") : null,
      more ? h("a", { class: "button secondary", "data-page": "next", href: `/ui/state/${encodeURIComponent(service)}?${new URLSearchParams({ ...(filter ? { key: filter } : {}), after: shown[shown.length - 1] })}` }, "Next ›") : null));
}
