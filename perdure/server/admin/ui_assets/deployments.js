// Deployments: register (force, dry run, HTTP/1.1, headers), each one's services and revisions,
// whether it is drained (no service's current revision and no open invocation pinned to it),
// remove, and prune every drained deployment.
import { api, clear, confirmAction, errorBox, fmtTime, get, h, modal, sql, toast } from "./lib.js";

function headersOf(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at <= 0) throw new Error(`header line without "name: value": ${line}`);
    out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

function registerForm(reload) {
  const uri = h("input", { name: "uri", id: "register-uri", placeholder: "http://localhost:9080", size: 36, required: true });
  const force = h("input", { type: "checkbox", id: "register-force" });
  const dry = h("input", { type: "checkbox", id: "register-dry-run" });
  const h11 = h("input", { type: "checkbox", id: "register-http11" });
  const hdrs = h("textarea", { id: "register-headers", rows: 2, placeholder: "additional headers, one `name: value` per line" });
  const out = h("div", { id: "register-result" });
  const form = h("form", { class: "panel", id: "register" }, h("h3", {}, "Register a deployment"),
    h("div", { class: "form-grid" }, h("label", {}, "Endpoint URI", uri),
      h("label", { class: "check" }, force, "Force (replace, even with breaking changes)"),
      h("label", { class: "check" }, dry, "Dry run (discover and validate only)"),
      h("label", { class: "check" }, h11, "HTTP/1.1")),
    hdrs, h("div", { class: "buttons" }, h("button", { type: "submit" }, "Register")), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const body = { uri: uri.value.trim(), force: force.checked, dry_run: dry.checked };
      if (h11.checked) body.use_http_11 = true;
      if (hdrs.value.trim()) body.additional_headers = headersOf(hdrs.value);
      const res = await api("POST", "/deployments", body);
      const result = () => h("div", { class: "ok" }, h("p", {}, dry.checked ? `Dry run: ${res.id} would register` : `Registered ${res.id}`),
        h("ul", { id: "register-services" }, res.services.map((s) => h("li", {}, `${s.name} (${s.ty}) revision ${s.revision}`))));
      toast(dry.checked ? "Dry run passed" : "Deployment registered");
      // The page reloads (a fresh form) after a real registration: show the result in the new one.
      if (!dry.checked) await reload();
      clear(document.getElementById("register-result") || out, result());
    } catch (e) { clear(out, errorBox(e)); }
  });
  return form;
}

export async function page({ root, query }) {
  const load = async () => {
    const [deps, svcs, pinned] = await Promise.all([
      get("/deployments"), get("/services"),
      sql("SELECT pinned_deployment_id AS d, count(*) AS n FROM sys_invocation WHERE status <> 'completed' GROUP BY pinned_deployment_id"),
    ]);
    const current = new Map(svcs.services.map((s) => [s.name, s.deployment_id]));
    const open = Object.fromEntries(pinned.filter((r) => r.d).map((r) => [r.d, r.n]));
    const rows = deps.deployments.slice().sort((a, b) => b.created_at.localeCompare(a.created_at)).map((d) => {
      const live = d.services.filter((s) => current.get(s.name) === d.id);
      return { d, live, open: open[d.id] || 0, drained: live.length === 0 && !open[d.id] };
    });
    const remove = async (d) => {
      if (!(await confirmAction(`Remove ${d.id}?`, `The deployment at ${d.uri} is removed from the registry.`, "Remove"))) return;
      try { await api("DELETE", `/deployments/${d.id}?force=true`); toast(`Removed ${d.id}`); await load(); } catch (e) { toast(`Remove failed: ${e.message}`, "error"); }
    };
    const prune = async () => {
      const drained = rows.filter((r) => r.drained);
      const ok = await modal(`Prune ${drained.length} drained deployments?`, h("ul", {}, drained.map((r) => h("li", { class: "mono" }, `${r.d.id} ${r.d.uri}`))),
        drained.length ? [{ label: `Remove ${drained.length}`, value: "ok", class: "danger" }] : []);
      if (ok !== "ok") return;
      for (const r of drained) await api("DELETE", `/deployments/${r.d.id}?force=true`);
      toast(`Removed ${drained.length} deployments`);
      await load();
    };
    clear(root,
      h("div", { class: "page-head" }, h("h1", {}, "Deployments"), h("button", { type: "button", class: "secondary", id: "prune", onclick: prune }, "Prune drained…")),
      registerForm(load),
      rows.length === 0 ? h("p", { class: "muted" }, "No deployments.") :
        h("table", { class: "grid", id: "deployments" },
          h("thead", {}, h("tr", {}, ["Deployment", "Endpoint", "Registered", "SDK / protocol", "Services (revision)", "State", ""].map((c) => h("th", {}, c)))),
          h("tbody", {}, rows.map((r) => h("tr", { "data-id": r.d.id, "data-drained": r.drained ? "yes" : "no" },
            h("td", { class: "mono" }, r.d.id), h("td", { class: "mono" }, r.d.uri), h("td", { class: "time" }, fmtTime(r.d.created_at)),
            h("td", {}, `${r.d.sdk_version || ""} ${r.d.protocol_type} ${r.d.http_version || ""}`),
            h("td", {}, r.d.services.map((s) => h("a", { class: `chip${current.get(s.name) === r.d.id ? "" : " muted"}`, href: `/ui/services/${encodeURIComponent(s.name)}` }, `${s.name} (${s.revision})`))),
            h("td", { class: "drained" }, r.drained ? "drained" : r.live.length ? "active" : `${r.open} open invocations pinned`),
            h("td", {}, h("button", { type: "button", class: "danger remove", onclick: () => remove(r.d) }, "Remove…")))))));
    if (query.get("register")) document.getElementById("register-uri")?.focus();
  };
  await load();
  return {};
}


