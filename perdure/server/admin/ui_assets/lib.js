// Shared helpers of the Perdure UI: DOM building, the admin API and SQL, formatting, dialogs.
// Plain ES modules, no build step; everything the UI fetches is on the admin origin.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---- API -------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function failure(resp) {
  const text = await resp.text();
  try {
    const body = JSON.parse(text);
    return new ApiError(resp.status, body.message || text);
  } catch {
    return new ApiError(resp.status, text || resp.statusText);
  }
}

// With an admin token set on the server, the UI asks for it once (app.js, on a 401) and keeps it
// in this browser's localStorage; every admin API request carries it as a bearer token. The
// invoke form's calls also carry the ingress token (the same one unless another is given).
const ADMIN_TOKEN_KEY = "perdure.adminToken";
const INGRESS_TOKEN_KEY = "perdure.ingressToken";

export function setTokens(admin, ingress) {
  if (admin) localStorage.setItem(ADMIN_TOKEN_KEY, admin); else localStorage.removeItem(ADMIN_TOKEN_KEY);
  if (ingress) localStorage.setItem(INGRESS_TOKEN_KEY, ingress); else localStorage.removeItem(INGRESS_TOKEN_KEY);
}

export function authHeaders() {
  const token = localStorage.getItem(ADMIN_TOKEN_KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

export function ingressAuthHeaders() {
  const token = localStorage.getItem(INGRESS_TOKEN_KEY) || localStorage.getItem(ADMIN_TOKEN_KEY);
  return token ? { ...authHeaders(), "x-perdure-ingress-authorization": `Bearer ${token}` } : {};
}

let unauthorized = null;
// app.js shows the sign-in form when any API request is refused for want of the token.
export function onUnauthorized(fn) { unauthorized = fn; }

export async function api(method, path, body, headers) {
  const init = { method, headers: { accept: "application/json", ...authHeaders(), ...(headers || {}) } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (!resp.ok) {
    const error = await failure(resp);
    if (resp.status === 401 && unauthorized) unauthorized(error);
    throw error;
  }
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path) => api("GET", path);

export async function sql(query) {
  const out = await api("POST", "/query", { query });
  return out.rows;
}

export const lit = (s) => "'" + String(s).replaceAll("'", "''") + "'";

let capsPromise = null;
// What this server supports beyond the basics (restart-as-new, retry now, batch), from /openapi.
export function capabilities() {
  capsPromise ??= get("/openapi").then(
    (oa) => {
      const paths = Object.keys(oa.paths || {});
      const resume = oa.paths?.["/invocations/{invocation_id}/resume"]?.patch;
      const retryPath = paths.find((p) => /^\/invocations\/\{[a-z_]+\}\/retry/.test(p));
      // Perdure's POST /invocations/batch {operation, invocation_ids}, or Restate's
      // POST /internal/invocations_batch_operations/{op} {invocation_ids}.
      const batch = paths.includes("/invocations/batch") ? { url: "/invocations/batch", perOp: false }
        : paths.some((p) => p.startsWith("/internal/invocations_batch_operations")) ? { url: "/internal/invocations_batch_operations", perOp: true } : null;
      return {
        restartAsNew: paths.includes("/invocations/{invocation_id}/restart-as-new"),
        retryPath: retryPath ? retryPath.split("}/")[1] : null,
        retryNow: !!retryPath || /retry/i.test(resume?.description || resume?.summary || ""),
        batch,
        paths,
      };
    },
    () => ({ restartAsNew: false, retryNow: false, retryPath: null, batch: null, paths: [] }),
  );
  return capsPromise;
}

// ---- formatting ------------------------------------------------------------------------

export const ms = (iso) => (iso ? Date.parse(iso) : null);
const pad = (n, w = 2) => String(n).padStart(w, "0");

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
}

export function fmtDur(msv) {
  if (msv === null || msv === undefined || Number.isNaN(msv)) return "";
  const a = Math.abs(msv);
  if (a < 1000) return `${Math.round(msv)} ms`;
  if (a < 60_000) return `${(msv / 1000).toFixed(a < 10_000 ? 2 : 1)} s`;
  if (a < 3_600_000) return `${Math.floor(msv / 60_000)}m ${Math.round((a % 60_000) / 1000)}s`;
  if (a < 86_400_000) return `${Math.floor(msv / 3_600_000)}h ${Math.round((a % 3_600_000) / 60_000)}m`;
  return `${Math.floor(msv / 86_400_000)}d ${Math.round((a % 86_400_000) / 3_600_000)}h`;
}

export function fmtRel(iso) {
  const t = ms(iso);
  if (t === null) return "";
  const d = t - Date.now();
  return d >= 0 ? `in ${fmtDur(d)}` : `${fmtDur(-d)} ago`;
}

// ISO 8601 duration ("PT86400S", as SQL renders durations) as text ("1d").
export function fmtIsoDur(iso) {
  const m = /^PT([\d.]+)S$/.exec(iso || "");
  return m ? fmtDur(Number(m[1]) * 1000) : iso || "";
}

export const isoNow = (offsetMs = 0) => new Date(Date.now() + offsetMs).toISOString();

export function statusBadge(status, retries) {
  const n = Number(retries || 0);
  const label = status === "backing-off" && n ? `backing-off · ${n} attempt${n === 1 ? "" : "s"}` :
    status === "running" && n > 1 ? `running · attempt ${n}` : status;
  return h("span", { class: `badge st-${status}`, "data-status": status }, label);
}

export const invLink = (id) => h("a", { href: `/ui/invocations/${id}`, class: "mono" }, id);

export function keyLink(service, ty, key) {
  if (key === undefined || key === null) return null;
  const kind = String(ty).toLowerCase().includes("workflow") ? "workflows" : "virtual-objects";
  return h("a", { href: `/ui/${kind}/${encodeURIComponent(service)}/${encodeURIComponent(key)}` }, key);
}

export function bytesToB64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function b64ToBytes(b64) {
  const s = atob(b64.replace(/\s+/g, ""));
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

// ---- dialogs and notices ---------------------------------------------------------------

export function toast(message, kind = "ok") {
  const el = h("div", { class: `toast ${kind}`, role: "status" }, message);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

// A modal with `body` and buttons; resolves with the clicked button's value (null on cancel).
export function modal(title, body, buttons) {
  return new Promise((resolve) => {
    const dlg = h("dialog", { class: "modal" });
    const close = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    const row = h("div", { class: "buttons" },
      h("button", { type: "button", class: "secondary", onclick: () => close(null) }, "Close"),
      buttons.map((b) => h("button", {
        type: "button", class: b.class || "primary", "data-action": b.value,
        onclick: async () => {
          if (b.run) { if ((await b.run()) === false) return; }
          close(b.value);
        },
      }, b.label)));
    dlg.append(h("h3", {}, title), h("div", { class: "modal-body" }, body), row);
    dlg.addEventListener("cancel", () => close(null));
    document.body.append(dlg);
    dlg.showModal();
  });
}

export async function confirmAction(title, text, label, danger = true) {
  const v = await modal(title, h("p", {}, text), [{ label, value: "ok", class: danger ? "danger" : "primary" }]);
  return v === "ok";
}

export function errorBox(err) {
  return h("div", { class: "error-box", role: "alert" }, String(err.message || err));
}

export function download(name, type, text) {
  const a = h("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

// Poll `fn` every `everyMs` until the returned stop function is called.
export function poller(fn, everyMs) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { console.debug("poll failed", e); }
    if (!stopped) timer = setTimeout(tick, everyMs);
  };
  timer = setTimeout(tick, everyMs);
  return () => { stopped = true; clearTimeout(timer); };
}

export function table(columns, rows, rowAttrs) {
  return h("table", { class: "grid" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c.label)))),
    h("tbody", {}, rows.map((r) => h("tr", rowAttrs ? rowAttrs(r) : {}, columns.map((c) => h("td", { class: c.class }, c.cell(r)))))));
}

export function servicesCache() {
  return get("/services").then((s) => s.services);
}

export const navigate = (url, replace = false) => window.perdureNavigate(url, replace);

export const STATUSES = ["pending", "scheduled", "ready", "running", "backing-off", "suspended", "paused", "completed"];

// A mini stacked bar of counts by status.
export function statusBar(counts) {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return h("div", { class: "statusbar", title: Object.entries(counts).map(([s, n]) => `${s}: ${n}`).join(", ") },
    total === 0 ? null : STATUSES.filter((s) => counts[s]).map((s) =>
      h("span", { class: `st-${s}`, style: { width: `${(100 * counts[s]) / total}%` } })));
}
