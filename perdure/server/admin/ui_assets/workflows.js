// Workflows: per service, its runs (keys); per key, the run invocation, its durable promises,
// the shared-handler invocations, and the workflow's state.
import { keySections, listPage } from "./objects.js";
import { fetchJournal } from "./journal.js";
import { stateSection } from "./state.js";
import { clear, fmtTime, get, h, invLink, lit, sql, statusBadge } from "./lib.js";

export async function page({ root, params, query, variant }) {
  if (variant === "list") return listPage(root, query, "Workflow", "workflows");
  const [service, key] = params;
  const svc = await get(`/services/${encodeURIComponent(service)}`);
  const main = svc.handlers.find((x) => x.ty === "Workflow")?.name;
  const s = lit(service), k = lit(key);
  const [runs, promises] = await Promise.all([
    main ? sql(`SELECT id, status, retry_count, created_at, completed_at, completion_result FROM sys_invocation WHERE target_service_name = ${s} ` +
      `AND target_service_key = ${k} AND target_handler_name = ${lit(main)} ORDER BY created_at DESC LIMIT 5`) : [],
    sql(`SELECT key, completed, completion_success_value_utf8, completion_success_value, completion_failure FROM sys_promise WHERE service_name = ${s} AND service_key = ${k} ORDER BY key`),
  ]);
  const run = runs[0];
  // A promise the run awaits appears in its journal before anything completes it.
  if (run) {
    const journal = await fetchJournal(run.id);
    for (const e of journal.entries) {
      if (e.ty === "Command: GetPromise" && e.done === undefined && !promises.some((p) => p.key === e.key)) {
        promises.push({ key: e.key, completed: false, awaited: true });
      }
    }
  }
  clear(root,
    h("div", { class: "page-head" }, h("h1", {}, `${service} / ${key}`),
      h("a", { class: "button secondary", href: `/ui/services/${encodeURIComponent(service)}?key=${encodeURIComponent(key)}#invoke` }, "Invoke…")),
    h("div", { class: "panel", id: "workflow-run" }, h("h3", {}, `Run (${main || "no workflow handler"})`),
      run ? h("div", {}, invLink(run.id), " ", statusBadge(run.status, run.retry_count),
        run.completion_result ? h("span", { class: "chip" }, run.completion_result) : null,
        h("span", { class: "muted" }, ` started ${fmtTime(run.created_at)}${run.completed_at ? `, completed ${fmtTime(run.completed_at)}` : ""}`))
        : h("p", { class: "muted" }, "Not started.")),
    h("section", { class: "section" }, h("h2", {}, "Promises"),
      promises.length === 0 ? h("p", { class: "muted", id: "no-promises" }, "No promise completed or awaited yet.") :
        h("table", { class: "grid", id: "promises" },
          h("thead", {}, h("tr", {}, h("th", {}, "Promise"), h("th", {}, "Status"), h("th", {}, "Value"))),
          h("tbody", {}, promises.map((p) => h("tr", { "data-promise": p.key },
            h("td", { class: "mono" }, p.key),
            h("td", { class: "promise-status" }, p.completed ? (p.completion_failure ? "rejected" : "resolved") : p.awaited ? "pending (awaited by the run)" : "pending"),
            h("td", { class: "mono" }, p.completion_failure || p.completion_success_value_utf8 || (p.completion_success_value ? `hex:${p.completion_success_value}` : ""))))))),
    ...(await keySections(service, key)), stateSection(service, key));
  return {};
}
