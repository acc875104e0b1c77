// The SQL console: query the introspection tables, with history (kept in this browser),
// examples, ids linked to their pages, and CSV / JSON downloads of the result.
import { clear, download, errorBox, h, sql } from "./lib.js";

const HISTORY_KEY = "perdure.sql.history";
const HISTORY_MAX = 30;
const EXAMPLES = [
  "SELECT status, count(*) AS n FROM sys_invocation GROUP BY status",
  "SELECT id, target, status, created_at FROM sys_invocation WHERE status <> 'completed' ORDER BY created_at DESC LIMIT 50",
  "SELECT id, target, retry_count, last_failure FROM sys_invocation WHERE status = 'backing-off' LIMIT 50",
  "SELECT service_name, service_key, key, value_utf8 FROM state LIMIT 100",
  "SELECT service_name, service_key, id, sequence_number FROM sys_inbox ORDER BY sequence_number LIMIT 100",
  "SELECT name, ty, revision, deployment_id FROM sys_service",
];

const loadHistory = () => { try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]"); } catch { return []; } };
function remember(q) {
  const list = [q, ...loadHistory().filter((x) => x !== q)].slice(0, HISTORY_MAX);
  localStorage.setItem(HISTORY_KEY, JSON.stringify(list));
}

function columnsOf(rows) {
  const cols = [];
  const seen = new Set();
  for (const r of rows) for (const k of Object.keys(r)) if (!seen.has(k)) { seen.add(k); cols.push(k); }
  return cols;
}

function cell(v) {
  if (v === undefined || v === null) return h("span", { class: "muted" }, "NULL");
  if (typeof v === "string" && /^inv_[0-9A-Za-z]{20,}$/.test(v)) return h("a", { href: `/ui/invocations/${v}`, class: "mono" }, v);
  if (typeof v === "string" && /^dp_[0-9A-Za-z]{10,}$/.test(v)) return h("a", { href: "/ui/deployments", class: "mono" }, v);
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

const csvField = (v) => {
  if (v === undefined || v === null) return "";
  const s = typeof v === "object" ? JSON.stringify(v) : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

export function toCsv(rows) {
  const cols = columnsOf(rows);
  return [cols.join(","), ...rows.map((r) => cols.map((c) => csvField(r[c])).join(","))].join("\n") + "\n";
}

export async function page({ root, query }) {
  const input = h("textarea", { id: "sql-input", rows: 6, spellcheck: "false" });
  input.value = query.get("query") || EXAMPLES[0];
  const out = h("div", { class: "results", id: "sql-results" });
  const hist = h("ul", { class: "history", id: "sql-history" });
  const meta = h("span", { class: "muted", id: "sql-meta" });
  let last = [];
  const csvBtn = h("button", { type: "button", class: "secondary", id: "download-csv", disabled: true, onclick: () => download("query.csv", "text/csv", toCsv(last)) }, "CSV");
  const jsonBtn = h("button", { type: "button", class: "secondary", id: "download-json", disabled: true, onclick: () => download("query.json", "application/json", JSON.stringify(last, null, 2)) }, "JSON");
  const drawHistory = () => clear(hist, loadHistory().map((q) => h("li", { title: "use this query", onclick: () => { input.value = q; } }, q)));
  const run = async () => {
    const q = input.value.trim();
    if (!q) return;
    remember(q);
    drawHistory();
    window.history.replaceState(null, "", `/ui/introspection?query=${encodeURIComponent(q)}`);
    clear(out, h("p", { class: "muted" }, "Running…"));
    const t0 = performance.now();
    try {
      last = await sql(q);
      const cols = columnsOf(last);
      meta.textContent = `${last.length} rows in ${Math.round(performance.now() - t0)} ms`;
      csvBtn.disabled = jsonBtn.disabled = false;
      clear(out, last.length === 0 ? h("p", { class: "muted" }, "No rows.") :
        h("table", { class: "grid", id: "sql-table" }, h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
          h("tbody", {}, last.map((r) => h("tr", {}, cols.map((c) => h("td", { class: "mono" }, cell(r[c]))))))));
    } catch (e) {
      last = [];
      csvBtn.disabled = jsonBtn.disabled = true;
      meta.textContent = "";
      clear(out, errorBox(e));
    }
  };
  input.addEventListener("keydown", (ev) => { if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") { ev.preventDefault(); run(); } });
  clear(root, h("h1", {}, "Introspection"),
    h("div", { class: "sql-editor" }, input,
      h("div", { class: "buttons form-grid" }, h("button", { type: "button", id: "sql-run", onclick: run }, "Run (Ctrl+Enter)"), csvBtn, jsonBtn, meta)),
    out,
    h("div", { class: "cards section" },
      h("div", { class: "panel" }, h("h3", {}, "History"), hist),
      h("div", { class: "panel" }, h("h3", {}, "Examples"), h("ul", { class: "history", id: "sql-examples" }, EXAMPLES.map((q) => h("li", { onclick: () => { input.value = q; run(); } }, q))))));
  drawHistory();
  if (query.get("query")) await run();
  return {};
}


