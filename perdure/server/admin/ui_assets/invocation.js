// One invocation: target, status with attempts, details, the last error and next retry,
// actions, and the journal timeline; polled while it runs.
import { ACTIONS, actionsFor, runOne } from "./actions.js";
import { JournalView } from "./journal.js";
import { clear, errorBox, fmtDur, fmtIsoDur, fmtRel, fmtTime, get, h, invLink, keyLink, lit, ms, navigate, poller, sql, statusBadge } from "./lib.js";

const POLL_MS = 1000;

function kv(label, value, id) {
  if (value === undefined || value === null || value === "") return null;
  return h("div", { class: "kv", "data-field": id || label }, h("span", { class: "k" }, label), h("span", { class: "v" }, value));
}

function errorBanner(inv) {
  if (!inv.last_failure || inv.status === "completed") return null;
  const [head, ...stack] = String(inv.last_failure).split("\n");
  return h("div", { class: "error-banner", id: "last-error", role: "alert" },
    h("div", { class: "head" }, h("strong", {}, head),
      inv.last_failure_error_code ? h("span", { class: "muted" }, ` ${inv.last_failure_error_code}`) : null),
    inv.last_failure_related_command_name || inv.last_failure_related_command_index !== undefined
      ? h("div", { class: "related" }, `at command ${inv.last_failure_related_command_index ?? ""} ${inv.last_failure_related_command_type || ""} "${inv.last_failure_related_command_name || ""}"`) : null,
    stack.length ? h("pre", { class: "stack", id: "stack-trace" }, stack.join("\n")) : null,
    inv.next_retry_at ? h("div", { class: "next-retry", id: "next-retry", "data-at": inv.next_retry_at },
      `Next retry ${fmtRel(inv.next_retry_at)} (${fmtTime(inv.next_retry_at)})`) : null);
}

function header(inv) {
  return h("div", { class: "inv-head" },
    h("h1", { class: "mono", id: "invocation-id" }, inv.id),
    h("div", { class: "target" },
      h("a", { class: "chip", href: `/ui/services/${encodeURIComponent(inv.target_service_name)}` }, inv.target_service_name),
      inv.target_service_key !== undefined ? h("span", { class: "chip key" }, keyLink(inv.target_service_name, inv.target_service_ty, inv.target_service_key)) : null,
      h("span", { class: "chip" }, inv.target_handler_name),
      h("span", { id: "status" }, statusBadge(inv.status, inv.retry_count)),
      inv.completion_result ? h("span", { class: `chip result-${inv.completion_result}`, id: "completion-result" }, inv.completion_result) : null));
}

function details(inv, dep) {
  const end = inv.completed_at ? ms(inv.completed_at) : Date.now();
  return h("div", { class: "cards details" },
    h("div", { class: "panel" }, h("h3", {}, "Invocation"),
      kv("Target", inv.target, "target"),
      kv("Key", inv.target_service_key, "key"),
      kv("Status", inv.status, "status"),
      kv("Attempts", inv.retry_count !== undefined ? String(inv.retry_count) : null, "attempts"),
      kv("Idempotency key", inv.idempotency_key, "idempotency_key"),
      kv("Invoked by", inv.invoked_by_id ? h("span", {}, invLink(inv.invoked_by_id), ` (${inv.invoked_by_target || ""})`) : inv.invoked_by, "invoked_by"),
      kv("Created", fmtTime(inv.created_at), "created_at"),
      kv("Modified", fmtTime(inv.modified_at), "modified_at"),
      kv("Completed", fmtTime(inv.completed_at), "completed_at"),
      kv("Duration", fmtDur(end - ms(inv.created_at)), "duration"),
      kv("Failure", inv.completion_failure, "completion_failure"),
      kv("Retained", inv.completion_retention ? `${fmtIsoDur(inv.completion_retention)} after completion` : null, "retention"),
      kv("Trace id", inv.trace_id, "trace_id")),
    h("div", { class: "panel" }, h("h3", {}, "Deployment"),
      kv("Deployment", inv.pinned_deployment_id || inv.last_attempt_deployment_id, "deployment_id"),
      kv("Endpoint", dep?.uri, "deployment_uri"),
      kv("SDK", dep?.sdk_version || inv.last_attempt_server, "sdk"),
      kv("Protocol", dep ? `${dep.protocol_type} ${dep.http_version || ""}` : null, "protocol"),
      kv("Last attempt", fmtTime(inv.last_start_at), "last_start_at")));
}

async function actionBar(inv, reload) {
  const ops = await actionsFor(inv.status);
  return h("div", { class: "actions", id: "actions" }, ops.map((op) =>
    h("button", { type: "button", class: ACTIONS[op].danger ? "danger" : "primary", "data-op": op,
      onclick: async () => {
        const out = await runOne(inv.id, op);
        if (out && op === "restart-as-new" && out.new_invocation_id) navigate(`/ui/invocations/${out.new_invocation_id}`);
        else if (out) reload();
      } }, `${ACTIONS[op].label}…`)));
}

async function fetchInvocation(id) {
  const rows = await sql(`SELECT * FROM sys_invocation WHERE id = ${lit(id)}`);
  return rows[0] || null;
}

function axisOf(inv, journal) {
  const entries = journal.entries;
  const t0 = Math.min(ms(inv.created_at), entries[0]?.at ?? Infinity);
  let t1 = inv.completed_at ? ms(inv.completed_at) : Math.max(Date.now(), entries[entries.length - 1]?.at ?? 0);
  const retryAt = inv.next_retry_at && inv.status !== "completed" ? ms(inv.next_retry_at) : null;
  if (retryAt) t1 = Math.max(t1, retryAt);
  return { t0, t1: Math.max(t1, t0 + 1), retryAt, live: inv.status !== "completed" };
}

export async function page({ root, params }) {
  const [id] = params;
  let inv = await fetchInvocation(id);
  if (!inv) {
    clear(root, h("h1", {}, "Invocation not found"),
      h("p", { id: "not-found" }, `No invocation with id ${id} (it may never have existed, or was purged after its retention).`),
      h("a", { href: "/ui/invocations" }, "All invocations"));
    return {};
  }
  const deployments = {};
  const dep = async (d) => { if (!d) return null; deployments[d] ??= get(`/deployments/${d}`).catch(() => null); return deployments[d]; };
  const head = h("div", {});
  const banner = h("div", {});
  const actions = h("div", {});
  const info = h("div", {});
  const journal = new JournalView({ id });
  const live = h("span", { class: "live", id: "live" });
  clear(root, head, actions, banner, info, h("div", { class: "live-row" }, live), journal.el);

  const draw = async () => {
    clear(head, header(inv));
    clear(banner, errorBanner(inv));
    clear(info, details(inv, await dep(inv.pinned_deployment_id || inv.last_attempt_deployment_id)));
    clear(actions, await actionBar(inv, reload));
    live.textContent = inv.status === "completed" ? "" : "● live";
  };
  const reload = async () => {
    const next = await fetchInvocation(id);
    if (!next) { clear(root, h("h1", {}, "Invocation not found"), h("p", { id: "not-found" }, `Invocation ${id} no longer exists (purged).`)); stop(); return; }
    const changed = JSON.stringify(next) !== JSON.stringify(inv);
    inv = next;
    const grew = await journal.refresh();
    if (changed) await draw();
    if (changed || grew || inv.status !== "completed") journal.setAxis(axisOf(inv, journal));
  };
  await draw();
  try {
    await journal.load();
  } catch (e) {
    journal.el.append(errorBox(e));
  }
  journal.setAxis(axisOf(inv, journal));
  let stopped = false;
  let stopPoll = null;
  const stop = () => { stopped = true; stopPoll?.(); };
  stopPoll = poller(async () => { if (!stopped && inv.status !== "completed") await reload(); }, POLL_MS);
  return { dispose: stop };
}
