// The developer console (issue 27): one page, hash routes, only the public API of this gateway
// (docs/api.md). Tokens live in memory (never in storage): a reload means signing in again.
"use strict";

const API = "/api/v1";
const SOCKET_IO = "/monitor/vendor/socket.io.min.js";
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const METRICS = ["request_count", "error_rate", "error_count", "5xx_count", "latency_p50",
  "latency_p95", "latency_p99", "avg_latency", "request_rate", "uptime"];
const OPERATORS = { gt: ">", gte: "≥", lt: "<", lte: "≤", eq: "=" };
const WEBHOOK_EVENTS = ["project.created", "project.updated", "project.deleted", "api_key.created",
  "api_key.revoked", "route.created", "route.updated", "route.deleted", "alert.triggered",
  "alert.acknowledged"];
const ADMIN_WEBHOOK_EVENTS = ["user.registered"];  // belongs to no project: admins only
const RANGES = { "1h": ["Last hour", 3600e3, "hour"], "24h": ["Last 24 hours", 86400e3, "hour"],
  "7d": ["Last 7 days", 7 * 86400e3, "day"], "30d": ["Last 30 days", 30 * 86400e3, "day"] };

const session = { access: null, refresh: null, user: null, timer: null, refreshing: null };
let projectsCache = null;
let leave = null; // what the current page stops when another is shown (timers, the socket)
let idCounter = 0;

// --- DOM helpers -----------------------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);

/** h("tag.class", {attrs, on: {event: fn}}, ...children): an element; text is never HTML. */
function h(spec, attrs, ...children) {
  const el = document.createElement(spec.match(/^[a-z0-9]+/i)[0]);
  const classes = [];
  for (const [, kind, name] of spec.matchAll(/([.#])([\w-]+)/g)) {
    if (kind === "#") el.id = name; else classes.push(name);
  }
  if (classes.length) el.className = classes.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (key === "text") el.textContent = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace an element's children, or add to them; null, undefined and false are skipped. */
const fill = (el, ...children) => { el.replaceChildren(); return append(el, children); };
const add = (el, ...children) => append(el, children);

const uid = (name) => `${name}-${++idCounter}`;

/** A labelled field: {label, name, type, value, options, hint, ...input attributes}. */
function field({ label, name, type = "text", options, hint, value, ...rest }) {
  const id = uid(name);
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  let input;
  if (type === "select") {
    input = h("select", { id, name, ...rest },
      options.map(([v, text]) => h("option", { value: v, text, selected: String(v) === String(value ?? "") })));
  } else if (type === "checkbox") {
    input = h("input", { id, name, type, checked: Boolean(value), ...rest });
    return h("div.field.check", { "data-field": name }, input, h("label", { for: id, text: label }),
      h("p.field-error", { id: errorId }));
  } else {
    input = h("input", { id, name, type, value: value ?? "", ...rest });
  }
  input.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  return h("div.field", { "data-field": name }, h("label", { for: id, text: label }), input,
    hint ? h("p.hint", { id: hintId, text: hint }) : null, h("p.field-error", { id: errorId }));
}

/** A form whose submit runs `onSubmit(values, form)`; errors are shown in it. */
function form(attrs, fields, submitText, onSubmit, extra = []) {
  const alert = h("p.form-error", { role: "alert" });
  const button = h("button.primary", { type: "submit", text: submitText });
  const el = h("form", { novalidate: true, ...attrs }, fields, h("div.actions", button, extra), alert);
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(el);
    button.disabled = true;
    try {
      await onSubmit(values(el), el);
    } catch (error) {
      showErrors(el, error);
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

function values(formEl) {
  const out = {};
  for (const el of formEl.elements) {
    if (!el.name) continue;
    if (el.type === "checkbox") {
      if (el.dataset.group) (out[el.dataset.group] ||= []).push(...(el.checked ? [el.value] : []));
      else out[el.name] = el.checked;
    } else out[el.name] = el.type === "password" ? el.value : el.value.trim();  // a password as typed
  }
  return out;
}

function clearErrors(formEl) {
  for (const p of formEl.querySelectorAll(".field-error")) p.textContent = "";
  for (const el of formEl.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  $(".form-error", formEl).textContent = "";
}

/** The API's `details` next to the fields they name; a summary in the form's alert. */
function showErrors(formEl, error) {
  const lines = [];
  let first = null;
  for (const detail of error.details || []) {
    const name = String(detail.field || "").split(".")[0];
    const box = name && formEl.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (box) {
      const control = box.querySelector("input, select, textarea, fieldset");
      $(".field-error", box).textContent = detail.message;
      control?.setAttribute("aria-invalid", "true");
      first ||= control;
      lines.push(`${$("label, legend", box)?.textContent || name}: ${detail.message}`);
    } else {
      lines.push(name ? `${name}: ${detail.message}` : detail.message);
    }
  }
  $(".form-error", formEl).textContent = lines.length ? lines.join(". ") : error.message;
  first?.focus();
}

function toast(text) {
  const el = $("#toast");
  el.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.textContent = ""; }, 5000);
}

/** A modal question; resolves true when `action` is chosen. */
function confirmDialog(title, message, action) {
  return new Promise((resolve) => {
    const titleId = uid("dialog");
    const dialog = h("dialog", { "aria-labelledby": titleId },
      h("h2", { id: titleId, text: title }), h("p", { text: message }),
      h("div.actions",
        h("button.danger", { type: "button", text: action, on: { click: () => done(true) } }),
        h("button", { type: "button", text: "Cancel", on: { click: () => done(false) } })));
    const opener = document.activeElement;
    const done = (answer) => { dialog.close(); dialog.remove(); opener?.focus?.(); resolve(answer); };
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector(".actions button:last-child").focus(); // Cancel: the safe choice
  });
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "never");
const num = (n, digits = 2) => (typeof n === "number" ? Number(n.toFixed(digits)).toLocaleString() : "–");

/** A table; on narrow screens each row becomes a card labelled by `data-label`. */
function table(caption, columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p.empty", { text: empty });
  return h("div.table-wrap", h("table",
    h("caption.sr-only", { text: caption }),
    h("thead", h("tr", columns.map(([label]) => h("th", { scope: "col", text: label })))),
    h("tbody", rows.map((row) => h("tr", columns.map(([label, cell]) => {
      const value = cell(row);
      return h("td", { "data-label": label }, value instanceof Node || Array.isArray(value) ? value : String(value ?? ""));
    }))))));
}

function statusClass(code) { return `status s${String(code)[0]}`; }

// --- HTTP and the session ------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    Object.assign(this, { status, code: body?.error, details: body?.details || [] });
  }
}

async function api(method, path, body, query, retried = false) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (session.access) headers.Authorization = `Bearer ${session.access}`;
  const qs = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "" && v !== undefined && v !== null)).toString() : "";
  let response;
  try {
    response = await fetch(API + path + (qs ? `?${qs}` : ""), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin", cache: "no-store",
    });
  } catch {
    throw new ApiError(0, { message: "The gateway could not be reached" });
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (response.status === 401 && data?.error === "TOKEN_EXPIRED" && session.refresh && !retried) {
    await refreshTokens();
    return api(method, path, body, query, true);
  }
  if (!response.ok) {
    if (response.status === 401 && session.access && path !== "/auth/logout") {
      endSession("Your session ended. Please sign in again.");
    }
    throw new ApiError(response.status, data);
  }
  return data;
}

/** How long a token just received lives (exp - iat): the machine's clock may be wrong. */
function tokenLifetime(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part));
    if (claims.exp > claims.iat) return (claims.exp - claims.iat) * 1000;
  } catch { /* not a JWT we can read */ }
  return 5 * 60e3;
}

function refreshTokens() {
  session.refreshing ||= (async () => {
    const used = session.refresh;
    try {
      const pair = await api("POST", "/auth/refresh", { refreshToken: used }, null, true);
      if (session.refresh !== used) {
        // signed out (or in again) meanwhile: this pair is no one's; end it at the server too
        fetch(`${API}/auth/logout`, { method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${pair.accessToken}` },
          body: JSON.stringify({ refreshToken: pair.refreshToken }) }).catch(() => {});
        return;
      }
      session.access = pair.accessToken;
      session.refresh = pair.refreshToken;
      scheduleRefresh();
      document.dispatchEvent(new CustomEvent("tokens"));
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        endSession("Your session ended. Please sign in again.");
      } else if (session.access) {
        // the gateway away a moment (a restart, a 429): try again while the token lasts
        clearTimeout(session.timer);
        session.timer = setTimeout(() => refreshTokens().catch(() => {}), 10e3);
      }
      throw error;
    } finally {
      session.refreshing = null;
    }
  })();
  return session.refreshing;
}

function scheduleRefresh() {
  clearTimeout(session.timer);
  const wait = Math.max(5000, tokenLifetime(session.access) - 60e3);
  session.timer = setTimeout(() => refreshTokens().catch(() => {}), wait);
}

function startSession(answer) {
  Object.assign(session, { access: answer.accessToken, refresh: answer.refreshToken, user: answer.user });
  projectsCache = null;
  scheduleRefresh();
  renderChrome();
  const back = startSession.after && !startSession.after.startsWith("#/sign-in") ? startSession.after : "#/projects";
  startSession.after = null;
  go(back);
}

function endSession(message) {
  if (!session.access) return;
  clearTimeout(session.timer);
  Object.assign(session, { access: null, refresh: null, user: null });
  projectsCache = null;
  renderChrome();
  signInMessage = message;
  go("#/sign-in");
}

async function signOut() {
  await session.refreshing?.catch(() => {});  // the newest refresh token is the one to end
  const refreshToken = session.refresh;
  if (refreshToken) await api("POST", "/auth/logout", { refreshToken }).catch(() => {});
  endSession("You are signed out.");
}

async function projects(fresh = false) {
  if (!projectsCache || fresh) {
    // every page: an admin sees all tenants' projects, which can be many
    const list = [];
    for (let page = 1; ; page += 1) {
      const answer = await api("GET", "/projects", undefined, { page, limit: 100, sort: "name", order: "asc" });
      list.push(...answer.projects);
      if (page >= answer.totalPages || page >= 100) break;
    }
    projectsCache = list;
  }
  return projectsCache;
}

async function projectOptions(all = "All projects") {
  const list = await projects();
  return [["", all], ...list.map((p) => [p.id, p.name])];
}

// --- routing -------------------------------------------------------------------------------

const ROUTES = {
  "sign-in": [pageSignIn, false], register: [pageRegister, false],
  "forgot-password": [pageForgot, false], "reset-password": [pageReset, false],
  "verify-email": [pageVerify, false],
  projects: [pageProjects, true], project: [pageProject, true], logs: [pageLogs, true],
  analytics: [pageAnalytics, true], alerts: [pageAlerts, true], live: [pageLive, true],
};
const NAV = [["Projects", "projects"], ["Logs", "logs"], ["Analytics", "analytics"],
  ["Alerts", "alerts"], ["Live", "live"]];
let signInMessage = "";
let routeSeq = 0;

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query) };
}

async function route() {
  if (leave) { try { leave(); } catch { /* ignore */ } leave = null; }
  const seq = ++routeSeq;
  const current = () => seq === routeSeq;
  if (/^#\/?(code|error)=/.test(location.hash)) {
    await providerReturn();
    return;
  }
  const { parts, query } = parseHash();
  let name = parts[0] || (session.access ? "projects" : "sign-in");
  if (name === "projects" && parts[1]) name = "project";
  const known = ROUTES[name];
  const main = $("#main");
  document.querySelectorAll("dialog").forEach((d) => d.remove());
  if (!known) {
    render(main, "Page not found", h("p", h("a", { href: "#/projects", text: "Back to projects" })));
    return;
  }
  const [page, needsSession] = known;
  markCurrent(needsSession && !session.access ? "sign-in" : name);
  if (needsSession && !session.access) {
    startSession.after = location.hash;
    signInMessage ||= "Please sign in to continue.";
    name = "sign-in";
    history.replaceState(null, "", "#/sign-in");
    await ROUTES["sign-in"][0](main, { parts: [], query: new URLSearchParams() });
  } else if (!needsSession && session.access && (name === "sign-in" || name === "register")) {
    go("#/projects");
    return;
  } else {
    try {
      if (needsSession) await projects(); // the pages' project lists, before anything is drawn
      if (!current()) return;
      await page(main, { parts, query, current });
    } catch (error) {
      if (!current()) return;
      render(main, "Something went wrong", h("p.form-error", { role: "alert", text: error.message }));
    }
  }
}

function markCurrent(name) {
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.dataset.page === name || (name === "project" && link.dataset.page === "projects");
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
}

/** Replace the main content with a page: its h1 title first, focused for screen readers. */
function render(main, title, ...content) {
  document.title = `${title} · Gateway console`;
  const heading = h("h1", { tabindex: "-1", text: title });
  fill(main, heading, content);
  if (render.moved) heading.focus({ preventScroll: false });
  render.moved = true;
  return heading;
}

function renderChrome() {
  const nav = $("#nav");
  const who = $("#who");
  // a viewer reads only: the controls that change data (class "writes") are not shown
  document.body.classList.toggle("read-only", session.user?.role === "VIEWER");
  if (session.access) {
    fill(nav, h("ul", NAV.map(([text, page]) => h("li", h("a", { href: `#/${page}`, "data-page": page, text })))));
    fill(who, 
      h("span.user", { text: session.user.email }),
      session.user.role !== "DEVELOPER" ? h("span.badge", { text: session.user.role.toLowerCase() }) : null,
      h("button", { type: "button", text: "Sign out", on: { click: signOut } }));
  } else {
    fill(nav, h("ul",
      h("li", h("a", { href: "#/sign-in", "data-page": "sign-in", text: "Sign in" })),
      h("li", h("a", { href: "#/register", "data-page": "register", text: "Register" }))));
    fill(who);
  }
}

// --- sign in and account pages -------------------------------------------------------------

async function pageSignIn(main) {
  const message = signInMessage;
  signInMessage = "";
  const providers = h("div.providers");
  render(main, "Sign in",
    message ? h("p.notice", { role: "status", text: message }) : null,
    h("div.card.narrow",
      form({}, [
        field({ label: "Email", name: "email", type: "email", autocomplete: "username", required: true }),
        field({ label: "Password", name: "password", type: "password", autocomplete: "current-password", required: true }),
      ], "Sign in", async (v) => {
        startSession(await api("POST", "/auth/login", { email: v.email, password: v.password }));
      }),
      h("p.links", h("a", { href: "#/forgot-password", text: "Forgot your password?" }), " · ",
        h("a", { href: "#/register", text: "Create an account" })),
      providers,
      h("p.hint", { text: "Your session lives in this tab only, in memory: reloading or closing the page signs you out." })));
  try {
    const list = await api("GET", "/oauth/providers");
    if (list?.length) {
      add(providers, h("p.or", { text: "or" }), h("ul.plain", list.map((p) => h("li",
        h("a.button", { href: `${API}/oauth/initiate/${encodeURIComponent(p.name)}?redirect=1`, text: `Sign in with ${p.displayName}` })))));
    }
  } catch { /* no providers */ }
}

function pageRegister(main) {
  render(main, "Create account", h("div.card.narrow",
    form({}, [
      field({ label: "Name", name: "name", autocomplete: "name", required: true, minlength: 2, maxlength: 100 }),
      field({ label: "Email", name: "email", type: "email", autocomplete: "email", required: true }),
      field({ label: "Password", name: "password", type: "password", autocomplete: "new-password", required: true,
        hint: "At least 8 characters, with an upper-case letter and a digit." }),
    ], "Create account", async (v) => {
      const answer = await api("POST", "/auth/register", v);
      toast(answer.message || "Account created");
      startSession(answer);
    }),
    h("p.links", "Already registered? ", h("a", { href: "#/sign-in", text: "Sign in" }))));
}

function pageForgot(main) {
  const done = h("p.notice", { role: "status" });
  render(main, "Forgot password", h("div.card.narrow",
    h("p", { text: "We send a link to reset your password to the address of your account." }),
    form({}, [
      field({ label: "Email", name: "email", type: "email", autocomplete: "email", required: true }),
    ], "Send reset link", async (v) => {
      const answer = await api("POST", "/auth/forgot-password", { email: v.email });
      done.textContent = `${answer.message}. Check your mail.`;
    }), done, h("p.links", h("a", { href: "#/sign-in", text: "Back to sign in" }))));
}

/** A mailed link's token leaves the address bar (and history) once read. */
function takeToken(query, page) {
  const token = query.get("token") || "";
  history.replaceState(null, "", `${location.pathname}#/${page}`);
  return token;
}

function pageReset(main, { query }) {
  const token = takeToken(query, "reset-password");
  const done = h("p.notice", { role: "status" });
  render(main, "Choose a new password", h("div.card.narrow",
    token ? form({}, [
      field({ label: "New password", name: "newPassword", type: "password", autocomplete: "new-password", required: true,
        hint: "At least 8 characters, with an upper-case letter and a digit." }),
    ], "Set password", async (v, formEl) => {
      await api("POST", "/auth/reset-password", { token, newPassword: v.newPassword });
      formEl.remove();
      fill(done, "Your password is changed. ", h("a", { href: "#/sign-in", text: "Sign in" }));
    }) : h("p.form-error", { role: "alert", text: "This link has no token. Ask for a new one." }),
    done));
}

async function pageVerify(main, { query }) {
  const token = takeToken(query, "verify-email");
  const out = h("p.notice", { role: "status", text: "Checking your link…" });
  render(main, "Verify email", h("div.card.narrow", out, h("p.links", h("a", { href: session.access ? "#/projects" : "#/sign-in", text: "Continue" }))));
  try {
    const answer = await api("GET", "/auth/verify-email", undefined, { token });
    out.textContent = `${answer.message}.`;
  } catch (error) {
    out.className = "form-error";
    out.textContent = error.message;
  }
}

// --- projects ------------------------------------------------------------------------------

async function pageProjects(main) {
  const list = h("div");
  const createBox = h("div.card", { hidden: true });
  const newButton = h("button.primary.writes", { type: "button", text: "New project", "aria-expanded": "false",
    on: { click: () => {
      createBox.hidden = !createBox.hidden;
      newButton.setAttribute("aria-expanded", String(!createBox.hidden));
      if (!createBox.hidden) $("input", createBox).focus();
    } } });
  add(createBox, h("h2", { text: "New project" }), form({}, [
    field({ label: "Project name", name: "name", required: true, maxlength: 100 }),
    field({ label: "Description", name: "description", maxlength: 500 }),
  ], "Create project", async (v, formEl) => {
    const project = await api("POST", "/projects", { name: v.name, description: v.description || null });
    formEl.reset();
    projectsCache = null;
    toast(`Project ${project.name} created`);
    go(`#/projects/${project.id}`);
  }));
  render(main, "Projects", h("div.toolbar", newButton), createBox, list);
  const all = await projects(true);
  fill(list, table("Projects", [
    ["Name", (p) => h("a", { href: `#/projects/${p.id}`, text: p.name })],
    ["Description", (p) => p.description || ""],
    session.user.role === "ADMIN" ? ["Owner", (p) => (p.userId === session.user.id ? "you" : h("code", { text: p.userId }))] : null,
    ["Created", (p) => when(p.createdAt)],
  ].filter(Boolean), all, "No projects yet: create one to issue keys and routes."));
}

async function pageProject(main, { parts, current }) {
  const id = parts[1];
  const tab = parts[2] || "keys";
  let project;
  try {
    project = await api("GET", `/projects/${encodeURIComponent(id)}`);
  } catch (error) {
    render(main, "Project", h("p.form-error", { role: "alert", text: error.message }),
      h("a", { href: "#/projects", text: "Back to projects" }));
    return;
  }
  if (!current()) return;
  render(main, project.name);
  const tabs = [["keys", "API keys"], ["routes", "Routes"], ["webhooks", "Webhooks"], ["settings", "Settings"]];
  const body = h("section.tab-body", { "aria-labelledby": `tab-${tab}` });
  add(main, 
    h("p.crumbs", h("a", { href: "#/projects", text: "Projects" }), " / ", project.name),
    project.description ? h("p.muted", { text: project.description }) : null,
    h("nav.tabs", { "aria-label": "Project sections" }, h("ul", tabs.map(([key, text]) => h("li",
      h("a", { id: `tab-${key}`, href: `#/projects/${project.id}/${key}`, text, "aria-current": key === tab ? "page" : null }))))),
    body);
  if (tab === "routes") await sectionRoutes(body, project);
  else if (tab === "webhooks") await sectionWebhooks(body, project);
  else if (tab === "settings") sectionSettings(body, project);
  else await sectionKeys(body, project);
}

function sectionSettings(body, project) {
  add(body, h("h2", { text: "Settings" }), h("div.card.writes", form({}, [
    field({ label: "Project name", name: "name", value: project.name, required: true, maxlength: 100 }),
    field({ label: "Description", name: "description", value: project.description || "", maxlength: 500 }),
  ], "Save project", async (v) => {
    const saved = await api("PATCH", `/projects/${project.id}`, { name: v.name, description: v.description || null });
    projectsCache = null;
    toast(`Project renamed to ${saved.name}`);
    route();
  })), h("div.card.danger-zone.writes", h("h2", { text: "Delete project" }),
    h("p", { text: "Deleting a project deletes its API keys, routes and webhooks. Its keys stop working at once." }),
    h("button.danger", { type: "button", text: "Delete project", on: { click: async () => {
      if (!await confirmDialog(`Delete project “${project.name}”?`,
        `The project “${project.name}”, its API keys, routes and webhooks are deleted. This cannot be undone.`,
        `Delete “${project.name}”`)) return;
      try {
        await api("DELETE", `/projects/${project.id}`);
        projectsCache = null;
        toast(`Project ${project.name} deleted`);
        go("#/projects");
      } catch (error) { toast(error.message); }
    } } })));
}

async function sectionKeys(body, project) {
  const fresh = h("div");
  const list = h("div");
  const refresh = async () => {
    const keys = await api("GET", `/projects/${project.id}/keys`);
    fill(list, table("API keys", [
      ["Name", (k) => k.name],
      ["Prefix", (k) => h("code", { text: k.prefix })],
      ["Created", (k) => when(k.createdAt)],
      ["Last used", (k) => when(k.lastUsedAt)],
      ["Expires", (k) => (k.expiresAt ? when(k.expiresAt) : "never")],
      ["Status", (k) => (k.active ? "active" : `revoked ${when(k.revokedAt)}`)],
      ["", (k) => (k.active ? h("button.danger.writes", { type: "button", text: "Revoke", "aria-describedby": null, title: `Revoke ${k.name}`,
        on: { click: async (event) => {
          event.target.disabled = true;
          try { await api("DELETE", `/keys/${k.id}`); toast(`Key ${k.name} revoked`); await refresh(); } catch (error) { toast(error.message); event.target.disabled = false; }
        } } }) : "")],
    ], keys, "No keys yet."));
  };
  add(body, h("h2", { text: "API keys" }), h("div.card.writes", form({ class: "inline" }, [
    field({ label: "Key name", name: "name", required: true, maxlength: 100 }),
    field({ label: "Expires in days", name: "expiresInDays", type: "number", min: 1, max: 365, hint: "Empty: never" }),
  ], "Create key", async (v, formEl) => {
    const made = await api("POST", `/projects/${project.id}/keys`,
      { name: v.name, ...(v.expiresInDays ? { expiresInDays: Number(v.expiresInDays) } : {}) });
    formEl.reset();
    showSecret(fresh, "Your new API key", made.key, "Copy key");
    await refresh();
  }), fresh), list);
  await refresh();
}

/** A secret shown once, with a copy button. */
function showSecret(box, title, secret, copyText) {
  const code = h("code.secret", { text: secret, tabindex: "0" });
  const copied = h("span.muted", { role: "status" });
  fill(box, h("div.secret-box", { role: "region", "aria-label": title },
    h("h3", { text: title }),
    h("p.warning", h("strong", { text: "Copy it now: you will not see this again." })),
    code,
    h("div.actions",
      h("button", { type: "button", text: copyText, on: { click: async () => {
        try { await navigator.clipboard.writeText(secret); copied.textContent = "Copied."; } catch {
          getSelection().selectAllChildren(code); copied.textContent = "Selected: press Ctrl+C to copy.";
        }
      } } }),
      h("button", { type: "button", text: "Done", on: { click: () => fill(box) } }),
      copied)));
  code.focus();
}

async function sectionRoutes(body, project) {
  const editor = h("div");
  const list = h("div");
  const refresh = async () => {
    const routes = await api("GET", `/projects/${project.id}/routes`);
    fill(list, table("Routes", [
      ["Method", (r) => h("span.method", { text: r.method })],
      ["Path", (r) => h("code", { text: r.path })],
      ["Upstream", (r) => r.upstreamUrl || r.service || ""],
      ["Auth", (r) => (r.authRequired ? "required" : "public")],
      ["Rate limit", (r) => (r.rateLimit ? `${r.rateLimit}/min` : "tier default")],
      ["Cache TTL", (r) => (r.cacheTTL ? `${r.cacheTTL} s` : "off")],
      ["Active", (r) => (r.active ? "yes" : "no")],
      ["", (r) => h("div.row-actions",
        h("button.writes", { type: "button", text: "Edit", "aria-label": `Edit ${r.method} ${r.path}`, on: { click: () => edit(r) } }),
        h("button.danger.writes", { type: "button", text: "Delete", "aria-label": `Delete ${r.method} ${r.path}`, on: { click: async () => {
          if (!await confirmDialog(`Delete route ${r.method} ${r.path}?`, "Requests to it get 404 within a second.", "Delete route")) return;
          try { await api("DELETE", `/routes/${r.id}`); toast("Route deleted"); await refresh(); } catch (error) { toast(error.message); }
        } } }))],
    ], routes, "No routes yet: add one to send traffic to an upstream."));
  };
  const edit = (r) => {
    const creating = !r;
    const title = creating ? "New route" : `Edit ${r.method} ${r.path}`;
    const fields = [
      field({ label: "Method", name: "method", type: "select", value: r?.method || "GET", options: METHODS.map((m) => [m, m]) }),
      field({ label: "Path", name: "path", value: r?.path || "", required: true, placeholder: "/orders/:id",
        hint: "Starts with /; :name matches one segment." }),
      r?.service
        ? h("p.hint", { text: `Sent to the platform's ${r.service} (set through the API).` })
        : field({ label: "Upstream URL", name: "upstreamUrl", type: "url", value: r?.upstreamUrl || "", required: true, placeholder: "https://api.example.com" }),
      field({ label: "Rate limit", name: "rateLimit", type: "number", min: 1, max: 10000, value: r?.rateLimit ?? "", hint: "Requests per minute; empty: the tier's limit." }),
      field({ label: "Cache TTL", name: "cacheTTL", type: "number", min: 0, max: 86400, value: r?.cacheTTL ?? "", hint: "Seconds GET answers are cached; empty: no caching." }),
      field({ label: "Auth required", name: "authRequired", type: "checkbox", value: r ? r.authRequired : true }),
      creating ? null : field({ label: "Active", name: "active", type: "checkbox", value: r.active }),
    ];
    const close = () => { fill(editor); $("#new-route")?.focus(); };
    fill(editor, h("div.card", h("h3", { text: title }), form({}, fields, "Save route", async (v) => {
      const payload = { method: v.method, path: v.path, authRequired: v.authRequired };
      if (!r?.service) payload.upstreamUrl = v.upstreamUrl;  // a service route keeps its service
      const numeric = (value) => (value === "" ? null : Number(value));
      if (creating) {
        if (v.rateLimit !== "") payload.rateLimit = numeric(v.rateLimit);
        if (v.cacheTTL !== "") payload.cacheTTL = numeric(v.cacheTTL);
        await api("POST", `/projects/${project.id}/routes`, payload);
      } else {
        Object.assign(payload, { rateLimit: numeric(v.rateLimit), cacheTTL: numeric(v.cacheTTL), active: v.active });
        await api("PATCH", `/routes/${r.id}`, payload);
      }
      toast(creating ? "Route created" : "Route saved");
      close();
      await refresh();
    }, [h("button", { type: "button", text: "Cancel", on: { click: close } })])));
    $("select, input", editor).focus();
  };
  add(body, h("h2", { text: "Routes" }),
    h("div.toolbar.writes", h("button.primary", { id: "new-route", type: "button", text: "New route", on: { click: () => edit(null) } })),
    editor, list);
  await refresh();
}

async function sectionWebhooks(body, project) {
  const fresh = h("div");
  const list = h("div");
  const deliveries = h("div");
  let edit = null;
  const delivery = h("div");
  const showDelivery = async (w, d) => {
    const full = await api("GET", `/webhooks/${w.id}/deliveries/${d.id}`);
    fill(delivery, h("div.card", { role: "region", "aria-label": "Delivery" },
      h("h3", { tabindex: "-1", text: `${full.eventType} · ${full.status}` }),
      h("dl.pairs", [["Delivery id", full.id], ["Event id", full.eventId], ["Created", when(full.createdAt)],
        ["Next attempt", full.nextAttemptAt ? when(full.nextAttemptAt) : null]]
        .filter(([, v]) => v).map(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })])),
      h("h4", { text: "Payload" }), h("pre.payload", { text: JSON.stringify(full.payload, null, 2) }),
      h("h4", { text: "Attempts" }), table(`Attempts of delivery ${full.id}`, [
        ["#", (a) => a.number], ["At", (a) => when(a.at)], ["Answer", (a) => a.statusCode ?? a.error ?? ""],
        ["Duration", (a) => (a.durationMs === null || a.durationMs === undefined ? "" : `${num(a.durationMs)} ms`)],
        ["Body", (a) => (a.answer ? h("code", { text: a.answer.slice(0, 200) }) : "")],
      ], full.attemptList || [], "Not attempted yet."),
      h("button", { type: "button", text: "Close", on: { click: () => { fill(delivery); $("h3", deliveries)?.focus(); } } })));
    $("h3", delivery).focus();
  };
  const shownDeliveries = { status: "", page: 1 };
  const showDeliveries = async (w, reset = true) => {
    if (reset) Object.assign(shownDeliveries, { status: "", page: 1, of: w.id });
    const page = await api("GET", `/webhooks/${w.id}/deliveries`, undefined,
      { limit: 20, page: shownDeliveries.page, status: shownDeliveries.status });
    const again = (changes) => { Object.assign(shownDeliveries, changes); showDeliveries(w, false).catch((e) => toast(e.message)); };
    const status = field({ label: "Delivery status", name: "status", type: "select", value: shownDeliveries.status,
      options: [["", "All"], ["pending", "pending"], ["delivered", "delivered"], ["failed", "failed"]] });
    $("select", status).addEventListener("change", (event) => again({ status: event.target.value, page: 1 }));
    fill(delivery);
    fill(deliveries, h("h3", { text: `Deliveries of ${w.name}`, tabindex: "-1" }), h("div.toolbar", status),
      table(`Deliveries of ${w.name}`, [
        ["Event", (d) => h("button.link", { type: "button", text: d.eventType, "aria-label": `Details of ${d.eventType} delivery ${d.id}`, on: { click: () => showDelivery(w, d).catch((e) => toast(e.message)) } })],
        ["Status", (d) => d.status], ["Attempts", (d) => d.attempts],
        ["Last answer", (d) => d.lastStatusCode ?? d.lastError ?? ""], ["Created", (d) => when(d.createdAt)],
        ["", (d) => (session.user.role === "VIEWER" ? "" : h("button", { type: "button", text: "Redeliver", on: { click: async () => {
          try { await api("POST", `/webhooks/${w.id}/deliveries/${d.id}/redeliver`); toast("Redelivery queued"); await showDeliveries(w, false); } catch (error) { toast(error.message); }
        } } }))],
      ], page.deliveries, shownDeliveries.status ? `No ${shownDeliveries.status} deliveries.` : "No deliveries yet."),
      h("div.actions.pager",
        h("span.muted", { text: `Page ${page.totalPages ? page.page : 0} of ${page.totalPages} · ${page.total} deliveries` }),
        page.page > 1 ? h("button", { type: "button", text: "Newer deliveries", on: { click: () => again({ page: page.page - 1 }) } }) : null,
        page.page < page.totalPages ? h("button", { type: "button", text: "Older deliveries", on: { click: () => again({ page: page.page + 1 }) } }) : null),
      delivery);
    $("h3", deliveries).focus();
  };
  const refresh = async () => {
    const page = await api("GET", `/projects/${project.id}/webhooks`, undefined, { limit: 100 });
    fill(list, table("Webhooks", [
      ["Name", (w) => w.name], ["URL", (w) => h("code", { text: w.url })],
      ["Events", (w) => w.events.join(", ")],
      ["Active", (w) => (w.active ? "yes" : `no${w.disabledReason ? ` (${w.disabledReason})` : ""}`)],
      ["", (w) => h("div.row-actions",
        h("button.writes", { type: "button", text: "Send test", "aria-label": `Send test to ${w.name}`, on: { click: async () => {
          try { await api("POST", `/webhooks/${w.id}/test`); toast("Test event sent"); await showDeliveries(w); } catch (error) { toast(error.message); }
        } } }),
        h("button", { type: "button", text: "Deliveries", "aria-label": `Deliveries of ${w.name}`, on: { click: () => showDeliveries(w).catch((e) => toast(e.message)) } }),
        h("button.writes", { type: "button", text: "Edit", "aria-label": `Edit ${w.name}`, on: { click: () => edit(w) } }),
        h("button.writes", { type: "button", text: w.active ? "Disable" : "Enable", "aria-label": `${w.active ? "Disable" : "Enable"} ${w.name}`, on: { click: async () => {
          try { await api("PATCH", `/webhooks/${w.id}`, { active: !w.active }); await refresh(); } catch (error) { toast(error.message); }
        } } }),
        h("button.writes", { type: "button", text: "Rotate secret", "aria-label": `Rotate secret of ${w.name}`, on: { click: async () => {
          if (!await confirmDialog(`Rotate the secret of ${w.name}?`, "The old secret keeps signing beside the new one for 24 hours.", "Rotate secret")) return;
          try { const made = await api("POST", `/webhooks/${w.id}/rotate-secret`); showSecret(fresh, `New secret of ${w.name}`, made.secret, "Copy secret"); } catch (error) { toast(error.message); }
        } } }),
        h("button.danger.writes", { type: "button", text: "Delete", "aria-label": `Delete ${w.name}`, on: { click: async () => {
          if (!await confirmDialog(`Delete webhook ${w.name}?`, "Its delivery log is deleted with it.", "Delete webhook")) return;
          try { await api("DELETE", `/webhooks/${w.id}`); fill(deliveries); await refresh(); } catch (error) { toast(error.message); }
        } } }))],
    ], page.webhooks, "No webhooks yet."));
  };
  const formBox = h("div.card.writes");
  const showForm = (w) => {
    const events = h("fieldset.field.events", { "data-field": "events" }, h("legend", { text: "Events" }),
      // every event it has stays listed (and checked), whatever this page knows of
      [...new Set([...WEBHOOK_EVENTS, ...(session.user.role === "ADMIN" ? ADMIN_WEBHOOK_EVENTS : []), ...(w?.events || [])])].map((event) => {
        const id = uid("event");
        return h("span.check", h("input", { id, type: "checkbox", name: `event-${event}`, value: event, "data-group": "events",
          checked: Boolean(w?.events.includes(event)) }), h("label", { for: id, text: event }));
      }), h("p.field-error"));
    const fields = [
      field({ label: "Webhook name", name: "name", value: w?.name || "", required: true, maxlength: 100 }),
      field({ label: "Endpoint URL", name: "url", type: "url", value: w?.url || "", required: true, placeholder: "https://example.com/hooks" }),
      events,
      w ? field({ label: "Active", name: "active", type: "checkbox", value: w.active }) : null,
    ];
    fill(formBox, h("h3", { text: w ? `Edit webhook ${w.name}` : "New webhook" }), form({}, fields, w ? "Save webhook" : "Create webhook", async (v, formEl) => {
      const payload = { name: v.name, url: v.url, events: v.events || [] };
      if (w) {
        await api("PATCH", `/webhooks/${w.id}`, { ...payload, active: v.active });
        toast(`Webhook ${v.name} saved`);
        showForm(null);
      } else {
        const made = await api("POST", `/projects/${project.id}/webhooks`, payload);
        formEl.reset();
        showSecret(fresh, "Signing secret of the new webhook", made.secret, "Copy secret");
      }
      await refresh();
    }, w ? [h("button", { type: "button", text: "Cancel", on: { click: () => showForm(null) } })] : []), fresh);
    if (w) $("input", formBox).focus();
  };
  edit = showForm;
  showForm(null);
  add(body, h("h2", { text: "Webhooks" }), formBox, list, deliveries);
  await refresh();
}

// --- logs ----------------------------------------------------------------------------------

async function pageLogs(main) {
  const results = h("div");
  const detail = h("div");
  const more = h("div.actions");
  const options = await projectOptions();
  let filters = {};
  let rows = [];
  const showDetail = (entry) => {
    const pairs = [["Request id", entry.requestId], ["Time", when(entry.timestamp)], ["Method", entry.method],
      ["Path", entry.path], ["Route", entry.route], ["Status", entry.statusCode], ["Latency", `${entry.latency} ms`],
      ["Client address", entry.ip], ["User", entry.userId], ["API key", entry.apiKeyId], ["Project", entry.projectId],
      ["User agent", entry.userAgent], ["Trace", entry.traceId], ["Source", entry.source],
      ["Error", entry.error ? `${entry.error.code}: ${entry.error.message}` : null]];
    fill(detail, h("div.card", { role: "region", "aria-label": "Log entry" },
      h("h2", { tabindex: "-1", text: `${entry.method} ${entry.path}` }),
      h("dl.pairs", pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })])),
      h("button", { type: "button", text: "Close", on: { click: () => fill(detail) } })));
    $("h2", detail).focus();
  };
  const draw = () => {
    fill(results, table("Log entries", [
      ["Time", (e) => when(e.timestamp)],
      ["Method", (e) => e.method],
      ["Path", (e) => h("button.link", { type: "button", text: e.path, title: "Show details", on: { click: () => showDetail(e) } })],
      ["Status", (e) => h("span", { class: statusClass(e.statusCode), text: e.statusCode })],
      ["Latency", (e) => `${e.latency} ms`],
    ], rows, "No entries match."));
  };
  const load = async (cursor) => {
    const path = filters.errors ? "/logs/errors" : "/logs";
    const query = { limit: 50, statusCode: filters.statusCode, method: filters.method, projectId: filters.projectId, userId: filters.userId,
      from: filters.from ? new Date(filters.from).toISOString() : "", to: filters.to ? new Date(filters.to).toISOString() : "", cursor };
    const page = await api("GET", path, undefined, query);
    rows = cursor ? rows.concat(page.entries) : page.entries;
    draw();
    fill(more, h("span.muted", { text: `${rows.length} of ${page.totalExact ? "" : "more than "}${page.total}` }),
      page.nextCursor ? h("button", { type: "button", text: "Load more", on: { click: () => load(page.nextCursor).catch((e) => toast(e.message)) } }) : null);
  };
  render(main, "Logs",
    h("div.card", h("h2", { text: "Find a request" }), form({ class: "inline" }, [
      field({ label: "Request ID", name: "requestId", required: true, placeholder: "the X-Request-Id of an answer" }),
    ], "Find", async (v) => { showDetail(await api("GET", `/logs/${encodeURIComponent(v.requestId)}`)); })),
    detail,
    h("div.card", h("h2", { text: "Filters" }), form({ class: "inline" }, [
      field({ label: "Status", name: "statusCode", type: "number", min: 100, max: 599 }),
      field({ label: "Method", name: "method", type: "select", options: [["", "Any"], ...METHODS.map((m) => [m, m])] }),
      field({ label: "Project", name: "projectId", type: "select", options }),
      session.user.role === "ADMIN" ? field({ label: "User ID", name: "userId", maxlength: 100 }) : null,
      field({ label: "From", name: "from", type: "datetime-local" }),
      field({ label: "To", name: "to", type: "datetime-local" }),
      field({ label: "Errors only", name: "errors", type: "checkbox" }),
    ], "Apply filters", async (v) => { filters = v; await load(); })),
    h("h2", { text: "Entries, newest first" }), results, more);
  await load();
}

// --- analytics -----------------------------------------------------------------------------

function barChart(points, label) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs) => { const el = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v); return el; };
  const width = 600, height = 160;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "chart", preserveAspectRatio: "none" });
  const top = Math.max(1, ...points.map((p) => p.count));
  const step = width / Math.max(points.length, 1);
  points.forEach((p, i) => {
    const barHeight = (p.count / top) * (height - 10);
    const barWidth = Math.max(1, Math.min(step * 0.8, 48));
    const bar = svg("rect", { x: i * step + (step - barWidth) / 2, y: height - barHeight, width: barWidth, height: barHeight, class: "bar" });
    const title = svg("title", {});
    title.textContent = `${when(p.date)}: ${p.count}`;
    bar.append(title);
    chart.append(bar);
  });
  chart.append(svg("line", { x1: 0, y1: height, x2: width, y2: height, class: "axis" }));
  const first = points[0] ? when(points[0].date) : "";
  const last = points.length ? when(points[points.length - 1].date) : "";
  return h("figure.chart-box", chart, h("figcaption.muted", { text: `${first} – ${last} · highest ${top}` }));
}

async function pageAnalytics(main, { query }) {
  const out = h("div", h("p.muted", { text: "Loading…" }));
  const options = await projectOptions();
  const state = { range: query.get("range") || "24h", projectId: query.get("project") || "" };
  const load = async () => {
    const [, span, interval] = RANGES[state.range] || RANGES["24h"];
    const q = { from: new Date(Date.now() - span).toISOString(), to: new Date().toISOString(), projectId: state.projectId };
    const get = (what, extra) => api("GET", `/analytics/${what}`, undefined, { ...q, ...extra });
    const [summary, series, errors, latency, endpoints, users, keys] = await Promise.all([
      get("summary"), get("requests-over-time", { interval }), get("error-rate"), get("latency"),
      get("top-endpoints", { limit: 10 }), get("top-users", { limit: 10 }), get("api-key-usage", { limit: 10 })]);
    const card = (title, value, note) => h("div.stat", h("h3", { text: title }), h("p.value", { text: value }), note ? h("p.muted", { text: note }) : null);
    fill(out, 
      h("section", h("h2", { text: "Summary" }), h("div.stats",
        card("Requests", num(summary.totalRequests, 0)),
        card("Error rate", `${num(errors.errorRate)} %`, `${errors.errors4xx} client, ${errors.errors5xx} server errors`),
        card("Average latency", `${num(summary.avgLatency)} ms`, `min ${num(summary.minLatency)} · max ${num(summary.maxLatency)}`),
        card("Latency p50", `${num(latency.p50)} ms`), card("Latency p95", `${num(latency.p95)} ms`), card("Latency p99", `${num(latency.p99)} ms`),
        card("Users", num(summary.uniqueUsers, 0)), card("Endpoints", num(summary.uniqueEndpoints, 0)))),
      h("section", h("h2", { text: `Requests per ${interval}` }),
        series.length ? barChart(series, `Requests per ${interval}: ${series.map((p) => `${when(p.date)} ${p.count}`).join("; ")}`) : h("p.empty", { text: "No traffic in this range." })),
      h("section", h("h2", { text: "Top endpoints" }), table("Top endpoints", [
        ["Method", (e) => e.method], ["Endpoint", (e) => h("code", { text: e.path })], ["Requests", (e) => e.count],
        ["Average latency", (e) => `${num(e.avgLatency)} ms`]], endpoints, "No traffic in this range.")),
      h("div.columns",
        h("section", h("h2", { text: "Top users" }), table("Top users", [["User", (u) => h("code", { text: u.userId })], ["Requests", (u) => u.count], ["Last active", (u) => when(u.lastActive)]], users, "None.")),
        h("section", h("h2", { text: "API key usage" }), table("API key usage", [["Key", (k) => h("code", { text: k.apiKeyId })], ["Requests", (k) => k.count], ["Last used", (k) => when(k.lastUsed)]], keys, "None."))));
  };
  render(main, "Analytics", h("div.card", form({ class: "inline" }, [
    field({ label: "Range", name: "range", type: "select", value: state.range, options: Object.entries(RANGES).map(([k, [text]]) => [k, text]) }),
    field({ label: "Project", name: "projectId", type: "select", value: state.projectId, options }),
  ], "Show", async (v) => { Object.assign(state, v); await load(); })), out);
  await load();
}

// --- alerts --------------------------------------------------------------------------------

async function pageAlerts(main, { current }) {
  const editor = h("div");
  const rulesBox = h("div");
  const eventsBox = h("div");
  const options = await projectOptions("All my traffic");
  const EVENTS_PER_PAGE = 20;
  const shown = { acknowledged: "false", severity: "", service: "", range: "", offset: 0 };
  let lastEvents = "";
  const projectName = (id) => options.find(([value]) => value === id)?.[1] || (id ? id : "all");
  const refreshRules = async () => {
    const rules = await api("GET", "/alerts/rules");
    fill(rulesBox, table("Alert rules", [
      ["Name", (r) => r.name],
      ["Condition", (r) => `${r.metric} ${OPERATORS[r.operator] || r.operator} ${r.threshold} over ${r.windowSeconds} s`],
      ["Project", (r) => projectName(r.projectId)],
      ["Severity", (r) => r.severity || "computed"],
      ["Enabled", (r) => (r.enabled ? "yes" : "no")],
      ["", (r) => h("div.row-actions",
        h("button.writes", { type: "button", text: "Edit", "aria-label": `Edit ${r.name}`, on: { click: () => edit(r) } }),
        h("button.writes", { type: "button", text: r.enabled ? "Disable" : "Enable", "aria-label": `${r.enabled ? "Disable" : "Enable"} ${r.name}`, on: { click: async () => {
          try { await api("PUT", `/alerts/rules/${r.id}`, { enabled: !r.enabled }); await refreshRules(); } catch (error) { toast(error.message); }
        } } }),
        h("button.danger.writes", { type: "button", text: "Delete", "aria-label": `Delete ${r.name}`, on: { click: async () => {
          if (!await confirmDialog(`Delete rule ${r.name}?`, "Its past events stay.", "Delete rule")) return;
          try { await api("DELETE", `/alerts/rules/${r.id}`); await refreshRules(); } catch (error) { toast(error.message); }
        } } }))],
    ], rules, "No rules yet."));
  };
  const refreshEvents = async (force) => {
    const span = RANGES[shown.range]?.[1];
    const page = await api("GET", "/alerts/events", undefined, {
      acknowledged: shown.acknowledged, severity: shown.severity, service: shown.service,
      from: span ? new Date(Date.now() - span).toISOString() : "", limit: EVENTS_PER_PAGE, offset: shown.offset });
    if (!page.events.length && shown.offset > 0) {  // the last page emptied (acknowledged)
      shown.offset = Math.max(0, shown.offset - EVENTS_PER_PAGE);
      await refreshEvents(true);
      return;
    }
    const key = JSON.stringify([page.total, page.events.map((e) => [e.id, e.acknowledged])]);
    if (!force && key === lastEvents) return;
    lastEvents = key;
    const focused = document.activeElement && eventsBox.contains(document.activeElement);
    fill(eventsBox, page.events.length ? h("ul.events", page.events.map((e) => h("li", { class: `event ${e.severity}${e.acknowledged ? " acknowledged" : ""}` },
      h("div", h("span.badge", { class: `badge ${e.severity}`, text: e.severity }), " ", h("strong", { text: e.ruleName }),
        h("p", { text: e.message }), h("p.muted", { text: `${when(e.timestamp)}${e.acknowledged ? ` · acknowledged by ${e.acknowledgedBy}` : ""}` })),
      e.acknowledged || session.user.role === "VIEWER" ? null : h("button", { type: "button", text: "Acknowledge", on: { click: async (event) => {
        event.target.disabled = true;
        try { await api("PUT", `/alerts/events/${e.id}/acknowledge`, {}); toast("Alert acknowledged"); await refreshEvents(true); } catch (error) { toast(error.message); event.target.disabled = false; }
      } } })))) : h("p.empty", { text: "No events." }),
    h("div.actions.pager",
      h("span.muted", { text: page.total ? `${page.offset + 1}–${page.offset + page.events.length} of ${page.total} event(s)` : "0 events" }),
      page.offset > 0 ? h("button", { type: "button", text: "Newer events", on: { click: () => turn(-EVENTS_PER_PAGE) } }) : null,
      page.offset + page.events.length < page.total ? h("button", { type: "button", text: "Older events", on: { click: () => turn(EVENTS_PER_PAGE) } }) : null));
    if (focused) $("h2#events-title")?.focus();
  };
  const edit = (r) => {
    const creating = !r;
    const title = creating ? "New rule" : `Edit ${r.name}`;
    const close = () => { fill(editor); $("#new-rule")?.focus(); };
    fill(editor, h("div.card", h("h3", { text: title }), form({}, [
      field({ label: "Rule name", name: "name", value: r?.name || "", required: true, maxlength: 100 }),
      field({ label: "Metric", name: "metric", type: "select", value: r?.metric || "error_rate", options: METRICS.map((m) => [m, m]) }),
      field({ label: "Operator", name: "operator", type: "select", value: r?.operator || "gt", options: Object.entries(OPERATORS).map(([k, s]) => [k, `${s} (${k})`]) }),
      field({ label: "Threshold", name: "threshold", type: "number", step: "any", value: r?.threshold ?? "", required: true }),
      field({ label: "Window (seconds)", name: "windowSeconds", type: "number", min: 10, max: 86400, value: r?.windowSeconds ?? 300 }),
      field({ label: "Cool-down (seconds)", name: "coolDownSeconds", type: "number", min: 0, max: 86400, value: r?.coolDownSeconds ?? 300 }),
      field({ label: "Project", name: "projectId", type: "select", value: r?.projectId || "",
        options: r?.projectId && !options.some(([id]) => id === r.projectId) ? [...options, [r.projectId, r.projectId]] : options }),
      field({ label: "Severity", name: "severity", type: "select", value: r?.severity || "", options: [["", "Computed"], ["info", "info"], ["warning", "warning"], ["critical", "critical"]] }),
      field({ label: "Service label", name: "service", value: r?.service || "gateway", required: true, maxlength: 50 }),
      field({ label: "Enabled", name: "enabled", type: "checkbox", value: r ? r.enabled : true }),
    ], "Save rule", async (v) => {
      const toNumber = (s) => (s === "" ? s : Number(s));
      const payload = { ...v, threshold: toNumber(v.threshold), windowSeconds: toNumber(v.windowSeconds),
        coolDownSeconds: toNumber(v.coolDownSeconds), severity: v.severity || null, projectId: v.projectId || null };
      if (payload.threshold === "") throw new ApiError(400, { message: "Request validation failed", details: [{ field: "threshold", message: "Enter a number" }] });
      if (creating) await api("POST", "/alerts/rules", payload);
      else await api("PUT", `/alerts/rules/${r.id}`, payload);
      toast(creating ? "Rule created" : "Rule saved");
      close();
      await refreshRules();
    }, [h("button", { type: "button", text: "Cancel", on: { click: close } })])));
    $("input", editor).focus();
  };
  const turn = (by) => {
    shown.offset = Math.max(0, shown.offset + by);
    refreshEvents(true).then(() => $("h2#events-title")?.focus()).catch((e) => toast(e.message));
  };
  const filters = form({ class: "inline" }, [
    field({ label: "Show", name: "acknowledged", type: "select", value: shown.acknowledged,
      options: [["false", "Not acknowledged"], ["true", "Acknowledged"], ["", "All"]] }),
    field({ label: "Severity", name: "severity", type: "select", options: [["", "Any"], ["info", "info"], ["warning", "warning"], ["critical", "critical"]] }),
    field({ label: "Service", name: "service", maxlength: 100, placeholder: "gateway" }),
    field({ label: "Fired", name: "range", type: "select", options: [["", "Any time"], ...Object.entries(RANGES).map(([k, [text]]) => [k, text])] }),
  ], "Filter events", async (v) => { Object.assign(shown, v, { offset: 0 }); await refreshEvents(true); });
  // a choice in a list applies at once, as people expect of it
  for (const select of filters.querySelectorAll("select")) select.addEventListener("change", () => filters.requestSubmit());
  render(main, "Alerts",
    h("section", h("h2", { text: "Rules" }),
      h("div.toolbar.writes", h("button.primary", { id: "new-rule", type: "button", text: "New rule", on: { click: () => edit(null) } })),
      editor, rulesBox),
    h("section", h("h2#events-title", { tabindex: "-1", text: "Events" }), h("div.card", filters), eventsBox));
  await Promise.all([refreshRules(), refreshEvents(true)]);
  if (!current()) return;
  const timer = setInterval(() => refreshEvents(false).catch(() => {}), 3000);
  leave = () => clearInterval(timer);
}

// --- live ----------------------------------------------------------------------------------

function loadSocketIo() {
  loadSocketIo.promise ||= new Promise((resolve, reject) => {
    if (window.io) { resolve(window.io); return; }
    const script = h("script", { src: SOCKET_IO });
    script.addEventListener("load", () => resolve(window.io));
    script.addEventListener("error", () => { loadSocketIo.promise = null; reject(new Error("The Socket.IO client did not load")); });
    document.head.append(script);
  });
  return loadSocketIo.promise;
}

/** An alert on the live view: acknowledged there too, by whoever may (not a viewer). */
function alertItem(a) {
  const status = h("p.muted", { text: when(a.timestamp) });
  const item = h("li", { class: `event ${a.severity}` }, h("div",
    h("span", { class: `badge ${a.severity}`, text: a.severity }), " ", h("strong", { text: a.ruleName || a.type || "alert" }),
    h("p", { text: a.message }), status));
  if (a.id && !a.acknowledged && session.user.role !== "VIEWER") {
    add(item, h("button", { type: "button", text: "Acknowledge", on: { click: async (event) => {
      event.target.disabled = true;
      try {
        const done = await api("PUT", `/alerts/events/${a.id}/acknowledge`, {});
        item.classList.add("acknowledged");
        status.textContent = `${when(a.timestamp)} · acknowledged by ${done.acknowledgedBy}`;
        event.target.remove();
      } catch (error) { toast(error.message); event.target.disabled = false; }
    } } }));
  } else if (a.id) add(item, h("a", { href: "#/alerts", text: "Open in Alerts" }));
  return item;
}

async function pageLive(main, { current }) {
  const stat = (label, id) => h("div.stat", h("h3", { text: label }), h("p.value", { id, text: "–" }));
  const link = h("span.badge", { text: "connecting", role: "status" });
  const requests = h("tbody");
  const alerts = h("ul.events");
  const NS = "http://www.w3.org/2000/svg";
  const chart = document.createElementNS(NS, "svg");
  for (const [k, v] of Object.entries({ viewBox: "0 0 300 80", class: "chart", role: "img", "aria-label": "Requests per second, last 5 minutes", preserveAspectRatio: "none" })) chart.setAttribute(k, v);
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("class", "line");
  line.setAttribute("points", "");
  chart.append(line);
  const points = [];
  render(main, "Live",
    h("p", "Connection: ", link, " · monitors connected: ", h("b#live-connections", { text: "0" }), " ", h("span.muted#live-dropped")),
    h("div.stats", stat("Requests / s", "live-rps"), stat("Error rate", "live-errors"), stat("Latency p50", "live-p50"),
      stat("Latency p95", "live-p95"), stat("Latency p99", "live-p99")),
    h("section", h("h2", { text: "Requests per second" }), chart),
    h("div.columns",
      h("section", h("h2", { text: "Latest requests" }), h("div.table-wrap", h("table",
        h("caption.sr-only", { text: "Latest requests, newest first" }),
        h("thead", h("tr", ["Time", "Method", "Path", "Status", "Latency"].map((t) => h("th", { scope: "col", text: t })))), requests))),
      h("section", h("h2", { text: "Alerts" }), alerts)));
  api("GET", "/alerts/events", undefined, { acknowledged: "false", limit: 5 }).then((page) => {
    if (!alerts.children.length) {
      add(alerts, page.events.length ? page.events.map(alertItem)
        : h("li.empty", { text: "No open alerts. New ones appear here as they fire." }));
    }
  }).catch(() => {});
  let io;
  try { io = await loadSocketIo(); } catch (error) { link.textContent = error.message; return; }
  if (!current()) return;
  const socket = io("/monitor", { auth: { token: session.access }, transports: ["websocket"] });
  const onTokens = () => { socket.auth = { token: session.access }; };
  document.addEventListener("tokens", onTokens);
  leave = () => { document.removeEventListener("tokens", onTokens); socket.disconnect(); };
  socket.on("connect", () => { link.textContent = "live"; link.className = "badge ok"; });
  // The hub ends a socket when its token expires (and refuses an expired one): come back with
  // fresh tokens; the client does not reconnect by itself after the server's disconnect.
  const reconnect = () => {
    if (!current()) return;
    socket.auth = { token: session.access };
    socket.connect();
  };
  socket.on("disconnect", (reason) => {
    link.textContent = "offline"; link.className = "badge";
    if (reason === "io server disconnect") reconnect();  // tokens were refreshed meanwhile
  });
  socket.on("connect_error", (error) => {
    link.textContent = error.data?.error || "offline"; link.className = "badge";
    if (error.data?.error === "TOKEN_EXPIRED") refreshTokens().then(reconnect).catch(() => {});
  });
  socket.on("connections:active", (data) => { $("#live-connections").textContent = data.count; });
  socket.on("log:dropped", (data) => { $("#live-dropped").textContent = `(${data.count} requests not shown in the last second)`; });
  socket.on("log:entry", (entry) => {
    const cells = [new Date().toLocaleTimeString(), entry.method, entry.path, entry.status, `${num(entry.latency)} ms`];
    const labels = ["Time", "Method", "Path", "Status", "Latency"];
    const row = h("tr", cells.map((value, i) => h("td", { "data-label": labels[i] }, i === 3 ? h("span", { class: statusClass(value), text: value }) : String(value))));
    requests.prepend(row);
    while (requests.children.length > 100) requests.lastChild.remove();
  });
  socket.on("stats", (s) => {
    $("#live-rps").textContent = num(s.rps);
    $("#live-errors").textContent = `${num(s.errorRate)} %`;
    for (const p of ["p50", "p95", "p99"]) $(`#live-${p}`).textContent = `${num(s[p])} ms`;
    points.push(s.rps);
    if (points.length > 300) points.shift();
    const top = Math.max(1, ...points) * 1.1;
    line.setAttribute("points", points.map((v, i) => `${300 - (points.length - 1 - i)},${80 - (v / top) * 78}`).join(" "));
  });
  socket.on("alert:new", (a) => {
    $(".empty", alerts)?.remove();
    alerts.prepend(alertItem(a));
  });
}

// --- start ---------------------------------------------------------------------------------

/** A provider sign-in came back (`#code=…`, or `#error=…`): the one-time code leaves the address
 * bar before anything else, then it is swapped for the session's tokens. */
async function providerReturn() {
  const fragment = new URLSearchParams(location.hash.replace(/^#\/?/, ""));
  history.replaceState(null, "", location.pathname + location.search);
  const code = fragment.get("code");
  if (code) {
    try {
      startSession(await api("POST", "/oauth/exchange", { code }));
      return;
    } catch (error) {
      signInMessage = `Signing in with the provider failed: ${error.message}`;
    }
  } else {
    signInMessage = "Signing in with the provider failed. Please try again.";  // never text from the address
  }
  route();
}

function start() {
  $(".skip").addEventListener("click", (event) => { event.preventDefault(); $("#main").focus(); });
  window.addEventListener("hashchange", route);
  renderChrome();
  route();
}

start();
