// Invocation list: filters kept in the URL, sorting, keyset paging, jump to an invocation,
// batch actions over the filter.
import { ACTIONS, runBatch } from "./actions.js";
import { STATUSES, capabilities, clear, errorBox, fmtDur, fmtTime, get, h, invLink, keyLink, lit, ms, navigate, sql, statusBadge, statusBar } from "./lib.js";

const FILTERS = ["status", "service", "handler", "key", "id", "ik", "after", "before"];
const SORTS = { created_at: "Created", modified_at: "Modified" };
const PAGE_DEFAULT = 50;
const PAGE_MAX = 1000;
const COLUMNS = "id, target, target_service_name, target_service_key, target_handler_name, target_service_ty, " +
  "status, created_at, modified_at, completed_at, retry_count, idempotency_key, completion_result, invoked_by_id";

// SQL conditions for the filters in `q` (URL search params).
export function conditions(q, { skipStatus = false } = {}) {
  const c = [];
  const status = q.get("status");
  if (status && !skipStatus) {
    const list = status.split(",").filter(Boolean);
    if (list.includes("not-completed")) c.push("status <> 'completed'");
    else c.push(`status IN (${list.map(lit).join(", ")})`);
  }
  const eq = { service: "target_service_name", handler: "target_handler_name", key: "target_service_key", id: "id", ik: "idempotency_key" };
  for (const [p, col] of Object.entries(eq)) if (q.get(p)) c.push(`${col} = ${lit(q.get(p))}`);
  if (q.get("after")) c.push(`created_at >= ${lit(q.get("after"))}`);
  if (q.get("before")) c.push(`created_at < ${lit(q.get("before"))}`);
  return c;
}

const whereSql = (c) => (c.length ? "WHERE " + c.join(" AND ") : "");

function describe(q) {
  const parts = FILTERS.filter((f) => q.get(f)).map((f) => `${f} = ${q.get(f)}`);
  return parts.length ? parts.join(", ") : "no filter (all invocations)";
}

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

function filterForm(q, services) {
  const field = (name, label, input) => h("label", {}, label, input || h("input", { name, value: q.get(name) || "", placeholder: label }));
  const statuses = new Set((q.get("status") || "").split(",").filter(Boolean));
  const form = h("form", { id: "filters", class: "filters" },
    h("fieldset", { class: "statuses" }, h("legend", {}, "Status"),
      ["not-completed", ...STATUSES].map((s) => h("label", { class: "chip" },
        h("input", { type: "checkbox", name: "status", value: s, checked: statuses.has(s) }), s))),
    field("service", "Service", h("select", { name: "service" }, h("option", { value: "" }, "any"),
      services.slice().sort((a, b) => a.name.localeCompare(b.name)).map((s) => h("option", { value: s.name, selected: q.get("service") === s.name }, s.name)))),
    field("handler", "Handler"), field("key", "Key"), field("id", "Invocation id"), field("ik", "Idempotency key"),
    field("after", "Created after", h("input", { type: "datetime-local", step: "1", name: "after", value: toLocalInput(q.get("after")) })),
    field("before", "Created before", h("input", { type: "datetime-local", step: "1", name: "before", value: toLocalInput(q.get("before")) })),
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Apply"),
      h("a", { class: "button secondary", href: "/ui/invocations" }, "Clear")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const out = new URLSearchParams();
    const fd = new FormData(form);
    const st = fd.getAll("status");
    if (st.length) out.set("status", st.join(","));
    for (const f of ["service", "handler", "key", "id", "ik"]) if (fd.get(f)) out.set(f, String(fd.get(f)).trim());
    for (const f of ["after", "before"]) if (fd.get(f)) out.set(f, new Date(String(fd.get(f))).toISOString());
    for (const keep of ["sort", "dir", "limit"]) if (q.get(keep)) out.set(keep, q.get(keep));
    navigate(`/ui/invocations?${out}`);
  });
  return form;
}

function jumpBox() {
  const input = h("input", { id: "jump", placeholder: "Go to invocation: id, idempotency key or workflow key", size: 48 });
  const out = h("div", { class: "jump-result" });
  const form = h("form", { class: "jump" }, input, h("button", { type: "submit" }, "Go"), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = input.value.trim();
    if (!v) return;
    if (/^inv_[0-9A-Za-z]+$/.test(v)) { navigate(`/ui/invocations/${v}`); return; }
    try {
      const rows = await sql(`SELECT id, target, status FROM sys_invocation WHERE idempotency_key = ${lit(v)} ` +
        `OR (target_service_ty = 'workflow' AND target_service_key = ${lit(v)}) ORDER BY created_at DESC LIMIT 20`);
      if (rows.length === 1) { navigate(`/ui/invocations/${rows[0].id}`); return; }
      clear(out, rows.length === 0 ? h("span", { class: "not-found" }, `No invocation with id, idempotency key or workflow key "${v}".`) :
        h("ul", {}, rows.map((r) => h("li", {}, invLink(r.id), " ", r.target, " ", statusBadge(r.status)))));
    } catch (e) { clear(out, errorBox(e)); }
  });
  return form;
}

function pageQuery(q, where, sort, desc, limit) {
  const cur = q.get("cur");
  const back = q.get("page") === "prev";
  const c = [...where];
  if (cur) {
    const [val, id] = [cur.slice(0, cur.lastIndexOf("~")), cur.slice(cur.lastIndexOf("~") + 1)];
    const older = desc !== back; // rows after the cursor in display order
    const op = older ? "<" : ">";
    c.push(`(${sort} ${op} ${lit(val)} OR (${sort} = ${lit(val)} AND id ${op} ${lit(id)}))`);
  }
  const dir = desc !== back ? "DESC" : "ASC";
  return { sql: `SELECT ${COLUMNS} FROM sys_invocation ${whereSql(c)} ORDER BY ${sort} ${dir}, id ${dir} LIMIT ${limit + 1}`, back };
}

function sortHeader(q, col) {
  const sort = q.get("sort") || "created_at";
  const desc = (q.get("dir") || "desc") === "desc";
  const p = new URLSearchParams(q);
  p.delete("cur"); p.delete("page");
  p.set("sort", col);
  p.set("dir", sort === col && desc ? "asc" : "desc");
  const mark = sort === col ? (desc ? " ▼" : " ▲") : "";
  return h("a", { href: `/ui/invocations?${p}`, class: "sort", "data-sort": col }, SORTS[col] + mark);
}

function rowsTable(q, rows) {
  return h("table", { class: "grid", id: "invocations" },
    h("thead", {}, h("tr", {}, h("th", {}, "Id"), h("th", {}, sortHeader(q, "created_at")), h("th", {}, sortHeader(q, "modified_at")),
      h("th", {}, "Duration"), h("th", {}, "Target"), h("th", {}, "Status"), h("th", {}, "Idempotency key"))),
    h("tbody", {}, rows.map((r) => {
      const end = r.completed_at ? ms(r.completed_at) : Date.now();
      return h("tr", { "data-id": r.id },
        h("td", {}, invLink(r.id)),
        h("td", { class: "time" }, fmtTime(r.created_at)),
        h("td", { class: "time" }, fmtTime(r.modified_at)),
        h("td", {}, fmtDur(end - ms(r.created_at))),
        h("td", {}, h("a", { href: `/ui/services/${encodeURIComponent(r.target_service_name)}` }, r.target_service_name),
          r.target_service_key !== undefined ? ["/", keyLink(r.target_service_name, r.target_service_ty, r.target_service_key)] : null,
          "/", r.target_handler_name),
        h("td", {}, statusBadge(r.status, r.retry_count), r.completion_result === "failure" ? h("span", { class: "failed" }, " failed") : null),
        h("td", { class: "mono" }, r.idempotency_key || ""));
    })));
}

export async function page({ root, query: q }) {
  const sort = SORTS[q.get("sort")] ? q.get("sort") : "created_at";
  const desc = (q.get("dir") || "desc") === "desc";
  const limit = Math.min(PAGE_MAX, Math.max(1, Number(q.get("limit")) || PAGE_DEFAULT));
  const where = conditions(q);
  const pq = pageQuery(q, where, sort, desc, limit);
  // Start the two scans first; the form needs only the service names.
  const scans = Promise.all([
    sql(pq.sql),
    sql(`SELECT status, count(*) AS n FROM sys_invocation ${whereSql(conditions(q, { skipStatus: true }))} GROUP BY status`),
  ]);
  const [services, caps] = await Promise.all([get("/services").then((s) => s.services), capabilities()]);
  const counts = h("div", { id: "counts", class: "counts" });
  const list = h("div", { id: "list" }, h("p", { class: "muted" }, "Loading…"));
  const pager = h("div", { class: "pager" });
  const batch = h("select", { id: "batch-action" }, h("option", { value: "" }, "Actions on all matching…"),
    ["cancel", "kill", "pause", "resume", "purge", ...(caps.restartAsNew ? ["restart-as-new"] : [])]
      .map((op) => h("option", { value: op }, ACTIONS[op].label)));
  batch.addEventListener("change", async () => {
    const op = batch.value;
    batch.value = "";
    if (!op) return;
    const res = await runBatch(op, where, describe(q));
    if (res) navigate(location.pathname + location.search, true);
  });
  clear(root, h("div", { class: "page-head" }, h("h1", {}, "Invocations"), jumpBox(), batch),
    filterForm(q, services), counts, list, pager);

  const [rowsRaw, byStatus] = await scans;
  const c = Object.fromEntries(byStatus.map((r) => [r.status, r.n]));
  const total = Object.values(c).reduce((a, b) => a + b, 0);
  const wanted = (q.get("status") || "").split(",").filter(Boolean);
  const matching = wanted.length === 0 ? total : Object.entries(c)
    .filter(([s]) => (wanted.includes("not-completed") ? s !== "completed" : wanted.includes(s)))
    .reduce((a, [, n]) => a + n, 0);
  clear(counts, h("span", { id: "match-count", "data-n": matching }, `${matching} matching`),
    wanted.length ? h("span", { class: "muted" }, ` (of ${total} without the status filter)`) : null,
    statusBar(c), STATUSES.filter((s) => c[s]).map((s) => h("span", { class: "chip" }, `${s}: ${c[s]}`)));
  const more = rowsRaw.length > limit;
  let rows = rowsRaw.slice(0, limit);
  if (pq.back) rows = rows.reverse();
  clear(list, rows.length === 0 ? h("p", { class: "muted", id: "no-rows" }, "No invocations match.") : rowsTable(q, rows));
  const link = (label, cursorRow, dir) => {
    const p = new URLSearchParams(q);
    p.set("cur", `${cursorRow[sort]}~${cursorRow.id}`);
    p.set("page", dir);
    return h("a", { class: "button secondary", href: `/ui/invocations?${p}`, "data-page": dir }, label);
  };
  const hasPrev = q.get("cur") && (!pq.back || more);
  const hasNext = pq.back || more;
  const first = new URLSearchParams(q); first.delete("cur"); first.delete("page");
  clear(pager,
    q.get("cur") ? h("a", { class: "button secondary", href: `/ui/invocations?${first}`, "data-page": "first" }, "« First") : null,
    hasPrev && rows.length ? link("‹ Previous", rows[0], "prev") : null,
    h("span", { class: "muted" }, `${rows.length} shown`),
    hasNext && rows.length ? link("Next ›", rows[rows.length - 1], "next") : null);
}
