// The Perdure UI's router: Restate UI's routes under /ui/, rendered by one page module each.
import { clear, errorBox, get, h, onUnauthorized, setTokens } from "./lib.js";

const ROUTES = [
  [/^\/ui\/?$/, "overview", () => import("./overview.js")],
  [/^\/ui\/invocations\/?$/, "invocations", () => import("./invocations.js")],
  [/^\/ui\/invocations\/([^/]+)$/, "invocations", () => import("./invocation.js")],
  [/^\/ui\/virtual-objects\/?$/, "virtual-objects", () => import("./objects.js"), "list"],
  [/^\/ui\/virtual-objects\/([^/]+)\/([^/]*)$/, "virtual-objects", () => import("./objects.js")],
  [/^\/ui\/workflows\/?$/, "workflows", () => import("./workflows.js"), "list"],
  [/^\/ui\/workflows\/([^/]+)\/([^/]*)$/, "workflows", () => import("./workflows.js")],
  [/^\/ui\/state\/?$/, "state", () => import("./state.js"), "list"],
  [/^\/ui\/state\/([^/]+)$/, "state", () => import("./state.js")],
  [/^\/ui\/services\/?$/, "services", () => import("./services.js"), "list"],
  [/^\/ui\/services\/([^/]+)$/, "services", () => import("./services.js")],
  [/^\/ui\/deployments\/?$/, "deployments", () => import("./deployments.js")],
  [/^\/ui\/introspection\/?$/, "introspection", () => import("./introspection.js")],
];

let dispose = null;
let seq = 0;

async function render() {
  const path = location.pathname;
  const app = document.getElementById("app");
  if (dispose) { dispose(); dispose = null; }
  const mine = ++seq;
  for (const [re, nav, load, variant] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll("#nav a[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
    try {
      const mod = await load();
      if (mine !== seq) return;
      const params = m.slice(1).map(decodeURIComponent);
      const out = await mod.page({ params, query: new URLSearchParams(location.search), variant, root: app });
      if (mine !== seq) { out?.dispose?.(); return; }
      dispose = out?.dispose || null;
    } catch (e) {
      if (mine === seq && e.status !== 401) clear(app, errorBox(e));
      if (e.status !== 401) console.error(e);
    }
    return;
  }
  clear(app, h("h2", {}, "Not found"), h("p", {}, `No UI page at ${path}.`));
}

// The server has an admin token and this browser has none (or a wrong one): a sign-in dialog
// over the page (pages may still write their own errors below it); signing in renders again.
function login(error) {
  const shown = document.getElementById("login");
  if (shown) { shown.querySelector(".login-reason").textContent = error.message; return; }
  const admin = h("input", { type: "password", id: "admin-token", autocomplete: "current-password", required: true });
  const ingress = h("input", { type: "password", id: "ingress-token", autocomplete: "off" });
  const form = h("form", { class: "login", id: "login" },
    h("h2", {}, "Sign in"),
    h("p", { class: "muted login-reason" }, error.message),
    h("label", {}, "Admin token ", admin),
    h("label", {}, "Ingress token (if different, for the invoke form) ", ingress),
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setTokens(admin.value.trim(), ingress.value.trim());
    form.remove();
    render();
  });
  document.body.append(form);
  admin.focus();
}
onUnauthorized(login);

export function navigate(url, replace = false) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest?.("a[href]");
  if (!a || a.target || a.hasAttribute("download") || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui")) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener("popstate", render);
window.perdureNavigate = navigate;
get("/version").then((v) => { document.getElementById("server-version").textContent = `v${v.version}`; }, () => {});
render();
