// The journal as a timeline: one row per entry rendered as code (run("x") → result), a
// waterfall on a time axis, callee journals expandable inline. Rows are windowed (only the
// visible ones are in the DOM), so a 20,000-entry journal scrolls as fast as a short one.
import { clear, fmtDur, fmtTime, get, h } from "./lib.js";

const ROW_H = 26; // px; fixed so the window of visible rows is arithmetic
const OVERSCAN = 15;
const FIRST_PAGE = 1000; // entries fetched before the first paint
const PREVIEW_CHARS = 120;

export async function fetchJournal(id, from = 0, limit = undefined) {
  const q = new URLSearchParams({ from: String(from) });
  if (limit) q.set("limit", String(limit));
  return get(`/ui/api/invocations/${encodeURIComponent(id)}/journal?${q}`);
}

const kindOf = (e) => e.ty.split(": ")[1] || e.ty;
const isCommand = (e) => e.ty.startsWith("Command");
const short = (v) => (v === undefined ? "" : v.length > PREVIEW_CHARS ? v.slice(0, PREVIEW_CHARS) + "…" : v);
const val = (e) => (e.v === undefined ? null : h("span", { class: e.b64 ? "val b64" : "val" }, short(e.v) + (e.trunc ? "…" : "")));
const fail = (f) => h("span", { class: "fail" }, `[${f.code}] ${f.message}`);
const str = (s) => h("span", { class: "str" }, JSON.stringify(s ?? ""));

function result(e, entries) {
  if (e.done === undefined) return e.cid !== undefined ? h("span", { class: "pending" }, " … pending") : null;
  const n = entries[e.done];
  if (!n) return null;
  if (n.f) return [" → ", fail(n.f)];
  if (n.v !== undefined) return [" → ", val(n)];
  if (n.x?.invocation_id) return [" → ", n.x.invocation_id];
  return [" → ", h("span", { class: "muted" }, "done")];
}

// The entry as a line of code.
export function entryCode(e, entries) {
  const k = kindOf(e);
  if (!isCommand(e)) {
    const id = e.nid !== undefined ? `#${e.nid}` : e.x?.signal_name || e.x?.signal_id || "";
    return [h("span", { class: "kw notif" }, `↳ ${k}`), ` ${id} `, e.f ? fail(e.f) : val(e) || (e.x?.invocation_id ? e.x.invocation_id : "")];
  }
  const name = e.n ? h("span", { class: "muted" }, ` "${e.n}"`) : null;
  switch (k) {
    case "Input": return [h("span", { class: "kw" }, "input"), "(", val(e), ")"];
    case "Output": return [h("span", { class: "kw" }, "return "), e.f ? fail(e.f) : val(e)];
    case "Run": return [h("span", { class: "kw" }, "run"), "(", str(e.n), ")", result(e, entries)];
    case "Sleep": return [h("span", { class: "kw" }, "sleep"), `(until ${fmtTime(new Date(e.wake).toISOString())})`, name, result(e, entries)];
    case "Call": return [h("span", { class: "kw" }, "call"), `(${e.target})(`, val(e), ")", result(e, entries)];
    case "OneWayCall": return [h("span", { class: "kw" }, "send"), `(${e.target})(`, val(e), ")",
      e.x?.invoke_time ? h("span", { class: "muted" }, ` at ${fmtTime(new Date(e.x.invoke_time).toISOString())}`) : null];
    case "SetState": return [h("span", { class: "kw" }, "set"), "(", str(e.key), ", ", val(e), ")"];
    case "GetEagerState": case "GetLazyState": return [h("span", { class: "kw" }, "get"), "(", str(e.key), ")",
      e.v !== undefined ? [" → ", val(e)] : k === "GetLazyState" ? result(e, entries) : h("span", { class: "muted" }, " → empty")];
    case "ClearState": return [h("span", { class: "kw" }, "clear"), "(", str(e.key), ")"];
    case "ClearAllState": return [h("span", { class: "kw" }, "clearAll"), "()"];
    case "GetEagerStateKeys": case "GetLazyStateKeys": return [h("span", { class: "kw" }, "stateKeys"), "()", e.v !== undefined ? [" → ", val(e)] : result(e, entries)];
    case "GetPromise": return [h("span", { class: "kw" }, "promise"), "(", str(e.key), ")", result(e, entries)];
    case "PeekPromise": return [h("span", { class: "kw" }, "peekPromise"), "(", str(e.key), ")", result(e, entries)];
    case "CompletePromise": return [h("span", { class: "kw" }, e.f ? "rejectPromise" : "resolvePromise"), "(", str(e.key), ", ", e.f ? fail(e.f) : val(e), ")", result(e, entries)];
    case "CompleteAwakeable": return [h("span", { class: "kw" }, "completeAwakeable"), `(${e.x?.awakeable_id || ""}, `, e.f ? fail(e.f) : val(e), ")"];
    case "SendSignal": return [h("span", { class: "kw" }, "signal"), `(${e.x?.target_invocation_id || ""}, `, e.f ? fail(e.f) : val(e), ")"];
    case "AttachInvocation": return [h("span", { class: "kw" }, "attach"), `(${e.x?.invocation_id || ""})`, result(e, entries)];
    case "GetInvocationOutput": return [h("span", { class: "kw" }, "getOutput"), `(${e.x?.invocation_id || ""})`, result(e, entries)];
    default: return [h("span", { class: "kw" }, k), name, val(e), result(e, entries)];
  }
}

// Notifications that a command row already shows (its result, a call's invocation id).
function linkedNotifications(entries) {
  const shown = new Set();
  const calls = new Set();
  for (const e of entries) {
    if (e.done !== undefined) shown.add(e.done);
    if (e.callee) calls.add(e.callee);
  }
  for (const e of entries) if (kindOf(e) === "CallInvocationId" && calls.has(e.x?.invocation_id)) shown.add(e.i);
  return shown;
}

export class JournalView {
  constructor({ id, onOpen }) {
    this.id = id;
    this.entries = [];
    this.total = 0;
    this.expanded = new Map(); // call row key -> callee entries
    this.axis = { t0: 0, t1: 1, retryAt: null, live: false };
    this.mode = "compact";
    this.filter = "";
    this.kind = "all";
    this.onOpen = onOpen;
    this.rows = [];
    this.count = h("span", { class: "muted", id: "journal-count" });
    this.axisEl = h("div", { class: "axis" });
    this.spacer = h("div", { class: "spacer" });
    this.scroll = h("div", { class: "journal-scroll", id: "journal" }, this.spacer);
    this.scroll.addEventListener("scroll", () => this.paint());
    this.detail = h("pre", { class: "entry-detail", hidden: true, id: "entry-detail" });
    const search = h("input", { placeholder: "Filter by name or type", id: "journal-filter", oninput: (ev) => { this.filter = ev.target.value.toLowerCase(); this.layout(); } });
    const kind = h("select", { id: "journal-kind", onchange: (ev) => { this.kind = ev.target.value; this.layout(); } },
      [["all", "All entries"], ["commands", "Commands"], ["notifications", "Notifications"], ["failed", "Failures"]].map(([v, l]) => h("option", { value: v }, l)));
    const mode = h("select", { id: "journal-mode", onchange: (ev) => { this.mode = ev.target.value; this.layout(); } },
      h("option", { value: "compact" }, "Compact"), h("option", { value: "detailed" }, "Detailed"));
    this.el = h("section", { class: "journal" },
      h("div", { class: "journal-bar" }, h("h2", {}, "Journal"), this.count, search, kind, mode),
      h("div", { class: "journal-head" }, h("span", {}, "#"), h("span", {}, "Entry"), h("span", {}, "Appended"), this.axisEl),
      this.scroll, this.detail);
  }

  async load() {
    const first = await fetchJournal(this.id, 0, FIRST_PAGE);
    this.entries = first.entries;
    this.total = first.total;
    this.layout();
    if (first.total > first.entries.length) {
      const rest = await fetchJournal(this.id, first.entries.length);
      this.entries = this.entries.concat(rest.entries);
      this.total = rest.total;
      this.layout();
    }
  }

  // Re-read the journal from the first command still waiting for its completion.
  async refresh() {
    let from = this.entries.length;
    for (const e of this.entries) if (e.cid !== undefined && e.done === undefined) { from = Math.min(from, e.i); break; }
    for (const e of this.entries) if ((kindOf(e) === "Call" || kindOf(e) === "OneWayCall") && !e.callee) { from = Math.min(from, e.i); break; }
    const page = await fetchJournal(this.id, from);
    if (page.total === this.total && from === this.entries.length) return false;
    this.entries = this.entries.slice(0, from).concat(page.entries);
    this.total = page.total;
    this.layout();
    return true;
  }

  setAxis(axis) {
    this.axis = axis;
    const span = Math.max(1, axis.t1 - axis.t0);
    clear(this.axisEl, [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { class: "tick", style: { left: `${f * 100}%` } }, fmtDur(f * span))),
      axis.retryAt && axis.retryAt >= axis.t0 ? h("span", { class: "retry-marker", id: "next-retry-marker", style: { left: `${(100 * (axis.retryAt - axis.t0)) / span}%` }, title: "next retry" }, "next retry") : null);
    this.paint();
  }

  visible(entries) {
    const hide = this.mode === "compact" ? linkedNotifications(entries) : new Set();
    return entries.filter((e) => {
      if (hide.has(e.i)) return false;
      if (this.kind === "commands" && !isCommand(e)) return false;
      if (this.kind === "notifications" && isCommand(e)) return false;
      if (this.kind === "failed" && !(e.f || (e.done !== undefined && entries[e.done]?.f))) return false;
      if (this.filter && !(`${e.ty} ${e.n || ""} ${e.key || ""} ${e.target || ""}`.toLowerCase().includes(this.filter))) return false;
      return true;
    });
  }

  layout() {
    this.rows = [];
    const walk = (owner, entries, depth) => {
      for (const e of this.visible(entries)) {
        const key = `${owner}:${e.i}`;
        this.rows.push({ e, entries, depth, key, owner });
        const sub = this.expanded.get(key);
        if (sub) walk(e.callee, sub, depth + 1);
      }
    };
    walk(this.id, this.entries, 0);
    const loading = this.entries.length < this.total ? ` (${this.entries.length} loaded…)` : "";
    this.count.textContent = `${this.total} entries${loading}${this.rows.length !== this.entries.length ? `, ${this.rows.length} shown` : ""}`;
    this.scroll.dataset.loaded = String(this.entries.length);
    this.spacer.style.height = `${this.rows.length * ROW_H}px`;
    this.scroll.style.height = `${Math.min(this.rows.length * ROW_H + 2, Math.max(260, window.innerHeight * 0.6))}px`;
    this.painted = null;
    this.paint();
  }

  paint() {
    const top = this.scroll.scrollTop;
    const height = this.scroll.clientHeight || 600;
    const lo = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const hi = Math.min(this.rows.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    if (this.painted && this.painted[0] === lo && this.painted[1] === hi) return;
    this.painted = [lo, hi];
    const nodes = [];
    for (let r = lo; r < hi; r++) nodes.push(this.row(this.rows[r], r));
    clear(this.spacer, nodes);
  }

  row(row, r) {
    const { e, entries, depth, key } = row;
    const { t0, t1 } = this.axis;
    const span = Math.max(1, t1 - t0);
    const end = e.done_at ?? (e.cid !== undefined && this.axis.live ? Date.now() : e.at);
    const left = Math.max(0, Math.min(100, (100 * (e.at - t0)) / span));
    const width = Math.max(0.4, Math.min(100 - left, (100 * (end - e.at)) / span));
    const failed = e.f || (e.done !== undefined && entries[e.done]?.f);
    const callLike = e.callee !== undefined;
    const expanded = this.expanded.has(key);
    return h("div", {
      class: `jrow${isCommand(e) ? "" : " notification"}${failed ? " failed" : ""}`, "data-index": e.i, "data-type": e.ty,
      "data-depth": depth, style: { top: `${r * ROW_H}px`, height: `${ROW_H}px` },
      onclick: (ev) => { if (!ev.target.closest("a,button")) this.showDetail(e); },
    },
      h("span", { class: "idx" }, String(e.i)),
      h("span", { class: "code", style: { paddingLeft: `${depth * 18 + 4}px` } },
        callLike ? h("button", { type: "button", class: "expand", title: expanded ? "Collapse the callee's journal" : "Expand the callee's journal",
          "data-callee": e.callee, onclick: () => this.toggle(key, e.callee) }, expanded ? "−" : "+") : null,
        entryCode(e, entries),
        callLike ? h("a", { class: "callee-link", href: `/ui/invocations/${e.callee}`, title: `open ${e.callee}` }, " <>") : null),
      h("span", { class: "at", title: fmtTime(new Date(e.at).toISOString()) }, `+${fmtDur(e.at - t0)}`),
      h("span", { class: "lane" }, h("span", { class: `wbar ${isCommand(e) ? "cmd" : "note"}${failed ? " failed" : ""}`, style: { left: `${left}%`, width: `${width}%` } })));
  }

  async toggle(key, callee) {
    if (this.expanded.has(key)) this.expanded.delete(key);
    else this.expanded.set(key, (await fetchJournal(callee, 0, FIRST_PAGE)).entries);
    this.layout();
  }

  showDetail(e) {
    this.detail.hidden = false;
    this.detail.textContent = JSON.stringify(e, null, 2);
  }
}
