// Actions on invocations: one at a time with confirmation, or in batches over a filter with a
// count preview and progress. Restart-as-new, retry-now and the batch endpoint are used only
// when the server's /openapi lists them; without a batch endpoint each id gets its own PATCH.
import { api, capabilities, clear, h, lit, modal, sql, toast } from "./lib.js";

const BATCH_CHUNK = 500; // ids per batch request (and per SQL page when collecting ids)
const PARALLEL = 8; // concurrent PATCHes without a batch endpoint

export const ACTIONS = {
  cancel: { label: "Cancel", verb: "cancel", danger: true, help: "The invocation stops at its next step and runs its compensations." },
  kill: { label: "Kill", verb: "kill", danger: true, help: "The invocation stops now, without compensation; its callees are killed too." },
  pause: { label: "Pause", verb: "pause", danger: false, help: "No new attempt starts until it is resumed." },
  resume: { label: "Resume", verb: "resume", danger: false, help: "A paused or suspended invocation runs again." },
  "retry-now": { label: "Retry now", verb: "retry-now", danger: false, help: "The next attempt starts now instead of after the back-off." },
  purge: { label: "Purge", verb: "purge", danger: true, help: "The completed invocation, its journal and output are deleted." },
  "restart-as-new": { label: "Restart as new", verb: "restart-as-new", danger: false, help: "A new invocation starts with the same input." },
};

// Which actions apply to an invocation in `status` on this server.
export async function actionsFor(status) {
  const caps = await capabilities();
  if (status === "completed") return ["purge", ...(caps.restartAsNew ? ["restart-as-new"] : [])];
  const out = ["cancel", "kill"];
  if (["running", "backing-off", "ready", "suspended", "pending", "scheduled"].includes(status)) out.push("pause");
  if (status === "paused" || status === "suspended") out.push("resume");
  if (status === "backing-off" && caps.retryNow) out.push("retry-now");
  return out;
}

async function patchOne(id, op) {
  const caps = await capabilities();
  let path = op;
  if (op === "retry-now") path = caps.retryPath || "resume";
  return api("PATCH", `/invocations/${encodeURIComponent(id)}/${path}`);
}

export async function runOne(id, op) {
  const a = ACTIONS[op];
  const ok = await modal(`${a.label} ${id}?`, h("div", {}, h("p", {}, a.help), h("p", { class: "mono" }, id)),
    [{ label: a.label, value: "ok", class: a.danger ? "danger" : "primary" }]);
  if (ok !== "ok") return null;
  try {
    const out = await patchOne(id, op);
    toast(`${a.label}: done`);
    return out || {};
  } catch (e) {
    toast(`${a.label} failed: ${e.message}`, "error");
    return null;
  }
}

async function collectIds(where) {
  const ids = [];
  let last = null;
  for (;;) {
    const cond = [...where, ...(last ? [`id > ${lit(last)}`] : [])];
    const rows = await sql(`SELECT id FROM sys_invocation ${cond.length ? "WHERE " + cond.join(" AND ") : ""} ORDER BY id LIMIT ${BATCH_CHUNK}`);
    for (const r of rows) ids.push(r.id);
    if (rows.length < BATCH_CHUNK) return ids;
    last = rows[rows.length - 1].id;
  }
}

async function applyAll(ids, op, onProgress) {
  const caps = await capabilities();
  let done = 0, failed = 0;
  const errors = [];
  if (caps.batch && op !== "retry-now") {
    for (let i = 0; i < ids.length; i += BATCH_CHUNK) {
      const chunk = ids.slice(i, i + BATCH_CHUNK);
      try {
        const out = caps.batch.perOp
          ? await api("POST", `${caps.batch.url}/${op}`, { invocation_ids: chunk })
          : await api("POST", caps.batch.url, { operation: op, invocation_ids: chunk });
        const bad = typeof out?.failed === "number" ? out.failed : Array.isArray(out?.failed) ? out.failed.length : 0;
        for (const r of out?.results || []) if (r.status >= 300 && errors.length < 5) errors.push(`${r.invocation_id}: ${r.message || r.status}`);
        failed += bad; done += chunk.length - bad;
      } catch (e) { failed += chunk.length; errors.push(e.message); }
      onProgress(done, failed);
    }
    return { done, failed, errors };
  }
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++];
      try { await patchOne(id, op); done++; } catch (e) { failed++; if (errors.length < 5) errors.push(`${id}: ${e.message}`); }
      onProgress(done, failed);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return { done, failed, errors };
}

// Batch `op` over every invocation matching the SQL conditions `where`.
export async function runBatch(op, where, describe) {
  const a = ACTIONS[op];
  const n = (await sql(`SELECT count(*) AS n FROM sys_invocation ${where.length ? "WHERE " + where.join(" AND ") : ""}`))[0].n;
  const progress = h("div", { class: "progress", hidden: true }, h("div", { class: "bar" }), h("span", { class: "text" }));
  const body = h("div", {},
    h("p", {}, a.help),
    h("p", { class: "batch-count" }, `${a.label} ${n} invocation${n === 1 ? "" : "s"} matching ${describe}.`),
    progress);
  let result = null;
  let finished = false;
  await modal(`${a.label} ${n} invocations?`, body, n === 0 ? [] : [{
    label: `${a.label} ${n}`, value: "ok", class: a.danger ? "danger" : "primary",
    run: async () => {
      if (finished) return true;
      progress.hidden = false;
      const text = progress.querySelector(".text");
      const bar = progress.querySelector(".bar");
      for (const b of body.closest("dialog").querySelectorAll("button[data-action]")) b.disabled = true;
      text.textContent = "collecting ids…";
      const ids = await collectIds(where);
      result = await applyAll(ids, op, (done, failed) => {
        bar.style.width = `${(100 * (done + failed)) / Math.max(1, ids.length)}%`;
        text.textContent = `${done + failed}/${ids.length} (${failed} failed)`;
      });
      text.textContent = `${result.done + result.failed}/${ids.length} done, ${result.failed} failed`;
      if (result.errors.length) body.append(h("pre", { class: "errors" }, result.errors.join("\n")));
      const btn = body.closest("dialog").querySelector("button[data-action]");
      clear(btn, "Done");
      btn.disabled = false;
      finished = true;
      return false; // keep the dialog open on the final progress until Done
    },
  }]);
  return result;
}
