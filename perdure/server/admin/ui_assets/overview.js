// Overview: invocations by status over a time window, and every service with its deployment.
import { STATUSES, clear, errorBox, fmtTime, get, h, isoNow, lit, poller, sql, statusBar, table } from "./lib.js";

const WINDOWS = { "15m": 900e3, "1h": 3600e3, "6h": 6 * 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, all: null };

export async function page({ root, query }) {
  const win = WINDOWS[query.get("window")] !== undefined ? query.get("window") : "1h";
  const counts = h("div", { class: "cards", id: "status-counts" });
  const outcome = h("div", { class: "outcome" });
  const services = h("div", { id: "services-table" });
  clear(root,
    h("div", { class: "page-head" },
      h("h1", {}, "Overview"),
      h("label", { class: "inline" }, "Created in the last ",
        h("select", { id: "window", onchange: (e) => window.perdureNavigate(`/ui/?window=${e.target.value}`, true) },
          Object.keys(WINDOWS).map((w) => h("option", { value: w, selected: w === win }, w === "all" ? "all time" : w)))),
      h("a", { class: "button", href: "/ui/deployments?register=1" }, "+ Deployment")),
    counts, outcome, h("h2", {}, "Services"), services);

  const refresh = async () => {
    const since = WINDOWS[win] === null ? null : isoNow(-WINDOWS[win]);
    const where = since ? `WHERE created_at >= ${lit(since)}` : "";
    // One scan for counts by status and outcome; one for what is still open per service.
    const [byStatusResult, perService, svcs, deps] = await Promise.all([
      sql(`SELECT status, completion_result, count(*) AS n FROM sys_invocation ${where} GROUP BY status, completion_result`),
      sql("SELECT target_service_name AS service, status, count(*) AS n FROM sys_invocation WHERE status <> 'completed' GROUP BY target_service_name, status"),
      get("/services"),
      get("/deployments"),
    ]);
    const byStatus = Object.entries(byStatusResult.reduce((acc, r) => { acc[r.status] = (acc[r.status] || 0) + r.n; return acc; }, {}))
      .map(([status, n]) => ({ status, n }));
    const byResult = byStatusResult.filter((r) => r.status === "completed");
    const c = Object.fromEntries(byStatus.map((r) => [r.status, r.n]));
    const after = since ? `&after=${encodeURIComponent(since)}` : "";
    clear(counts, STATUSES.map((s) =>
      h("a", { class: `card st-border-${s}`, href: `/ui/invocations?status=${s}${after}`, "data-status": s },
        h("div", { class: "count" }, String(c[s] || 0)), h("div", { class: "label" }, s))));
    const ok = byResult.find((r) => r.completion_result === "success")?.n || 0;
    const failed = byResult.find((r) => r.completion_result === "failure")?.n || 0;
    const done = ok + failed;
    clear(outcome, h("span", { id: "success-rate" },
      done ? `${((100 * ok) / done).toFixed(1)}% of ${done} completed invocations succeeded (${failed} failed)` : "No completed invocations in this window."));
    const depById = Object.fromEntries(deps.deployments.map((d) => [d.id, d]));
    const active = {};
    for (const r of perService) (active[r.service] ??= {})[r.status] = r.n;
    const rows = svcs.services.slice().sort((a, b) => a.name.localeCompare(b.name));
    clear(services, rows.length === 0 ? h("p", { class: "muted" }, "No services yet: register a deployment.") :
      table([
        { label: "Service", cell: (s) => h("a", { href: `/ui/services/${encodeURIComponent(s.name)}` }, s.name) },
        { label: "Type", cell: (s) => h("span", { class: `ty ty-${s.ty}` }, s.ty) },
        { label: "Not completed", cell: (s) => {
          const a = active[s.name] || {};
          const n = Object.values(a).reduce((x, y) => x + y, 0);
          return h("a", { class: "not-completed", href: `/ui/invocations?service=${encodeURIComponent(s.name)}&status=not-completed` },
            h("span", { class: "n" }, String(n)), statusBar(a));
        } },
        { label: "Deployment", cell: (s) => h("span", {}, h("span", { class: "mono" }, depById[s.deployment_id]?.uri || s.deployment_id),
          h("span", { class: "muted" }, ` rev ${s.revision}`)) },
        { label: "Deployed at", cell: (s) => fmtTime(depById[s.deployment_id]?.created_at) },
      ], rows, (s) => ({ "data-service": s.name })));
  };
  try { await refresh(); } catch (e) { root.append(errorBox(e)); }
  return { dispose: poller(refresh, 3000) };
}
