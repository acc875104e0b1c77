// Virtual objects: per service, its keys (from state, the lock and the inbox, so a key with
// only state is listed too); per key, the lock holder, the inbox in order, state and history.
import { stateSection } from "./state.js";
import { clear, fmtTime, get, h, invLink, lit, sql, statusBadge } from "./lib.js";

const KEYS_MAX = 500;
const HISTORY_ROWS = 30;

export async function keyRows(service) {
  const s = lit(service);
  const [state, inbox, locks, invs] = await Promise.all([
    sql(`SELECT service_key, count(*) AS n FROM state WHERE service_name = ${s} GROUP BY service_key`),
    sql(`SELECT service_key, count(*) AS n FROM sys_inbox WHERE service_name = ${s} GROUP BY service_key`),
    sql(`SELECT service_key, invocation_id FROM sys_keyed_service_status WHERE service_name = ${s}`),
    sql(`SELECT target_service_key AS service_key, count(*) AS n FROM sys_invocation WHERE target_service_name = ${s} GROUP BY target_service_key`),
  ]);
  const keys = new Map();
  const at = (k) => { if (!keys.has(k)) keys.set(k, { key: k, state: 0, inbox: 0, lock: null, invocations: 0 }); return keys.get(k); };
  for (const r of state) at(r.service_key).state = r.n;
  for (const r of inbox) at(r.service_key).inbox = r.n;
  for (const r of locks) at(r.service_key).lock = r.invocation_id;
  for (const r of invs) if (r.service_key !== undefined) at(r.service_key).invocations = r.n;
  return [...keys.values()].sort((a, b) => a.key.localeCompare(b.key)).slice(0, KEYS_MAX);
}

async function listPage(root, query, ty, base) {
  const svcs = (await get("/services")).services.filter((s) => s.ty === ty).sort((a, b) => a.name.localeCompare(b.name));
  const service = query.get("service") || svcs[0]?.name;
  const title = ty === "Workflow" ? "Workflows" : "Virtual objects";
  if (!service) { clear(root, h("h1", {}, title), h("p", { class: "muted" }, `No ${title.toLowerCase()} registered.`)); return; }
  const rows = await keyRows(service);
  clear(root, h("h1", {}, title),
    h("div", { class: "tabs" }, svcs.map((s) => h("a", { class: `chip${s.name === service ? " active" : ""}`, href: `/ui/${base}?service=${encodeURIComponent(s.name)}` }, s.name))),
    rows.length === 0 ? h("p", { class: "muted" }, "No instances.") :
      h("table", { class: "grid", id: "keys" },
        h("thead", {}, h("tr", {}, ["Key", "Lock holder", "Inbox", "State entries", "Invocations"].map((c) => h("th", {}, c)))),
        h("tbody", {}, rows.map((r) => h("tr", { "data-key": r.key },
          h("td", {}, h("a", { href: `/ui/${base}/${encodeURIComponent(service)}/${encodeURIComponent(r.key)}` }, r.key)),
          h("td", {}, r.lock ? invLink(r.lock) : h("span", { class: "muted" }, "none")),
          h("td", { class: "inbox-n" }, String(r.inbox)), h("td", {}, String(r.state)), h("td", {}, String(r.invocations)))))));
}

// Lock holder, inbox in order and recent invocations of one key.
export async function keySections(service, key) {
  const s = lit(service), k = lit(key);
  const [lock, inbox, recent] = await Promise.all([
    sql(`SELECT invocation_id FROM sys_keyed_service_status WHERE service_name = ${s} AND service_key = ${k}`),
    sql(`SELECT id, sequence_number, created_at FROM sys_inbox WHERE service_name = ${s} AND service_key = ${k} ORDER BY sequence_number`),
    sql(`SELECT id, target_handler_name, status, retry_count, created_at FROM sys_invocation WHERE target_service_name = ${s} AND target_service_key = ${k} ORDER BY created_at DESC LIMIT ${HISTORY_ROWS}`),
  ]);
  const handlerOf = Object.fromEntries(recent.map((r) => [r.id, r.target_handler_name]));
  return [
    h("div", { class: "kv", id: "lock-holder" }, h("span", { class: "k" }, "Lock holder"),
      h("span", { class: "v" }, lock[0] ? [invLink(lock[0].invocation_id), handlerOf[lock[0].invocation_id] ? ` ${handlerOf[lock[0].invocation_id]}` : ""] : h("span", { class: "muted" }, "none (unlocked)"))),
    h("section", { class: "section" }, h("h2", {}, `Inbox (${inbox.length})`),
      inbox.length === 0 ? h("p", { class: "muted" }, "Empty.") :
        h("ol", { id: "inbox" }, inbox.map((r) => h("li", { "data-id": r.id, "data-seq": r.sequence_number }, invLink(r.id),
          h("span", { class: "muted" }, ` #${r.sequence_number} queued ${fmtTime(r.created_at)}`))))),
    h("section", { class: "section" }, h("h2", {}, "Recent invocations"),
      h("table", { class: "grid", id: "recent" }, h("tbody", {}, recent.map((r) => h("tr", { "data-id": r.id },
        h("td", {}, invLink(r.id)), h("td", {}, r.target_handler_name), h("td", {}, statusBadge(r.status, r.retry_count)), h("td", { class: "time" }, fmtTime(r.created_at))))))),
  ];
}

export async function page({ root, params, query, variant }) {
  if (variant === "list") return listPage(root, query, "VirtualObject", "virtual-objects");
  const [service, key] = params;
  clear(root, h("div", { class: "page-head" }, h("h1", {}, `${service} / ${key}`),
    h("a", { class: "button secondary", href: `/ui/invocations?service=${encodeURIComponent(service)}&key=${encodeURIComponent(key)}` }, "Invocations"),
    h("a", { class: "button secondary", href: `/ui/services/${encodeURIComponent(service)}?key=${encodeURIComponent(key)}#invoke` }, "Invoke…")),
  ...(await keySections(service, key)), stateSection(service, key));
  return {};
}

export { listPage };
