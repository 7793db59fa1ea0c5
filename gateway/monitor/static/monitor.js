// The monitor page (docs/api.md section 11.1): log in, then live panels fed by the /monitor
// Socket.IO namespace and the alerts API. Tokens stay in memory; the access token is
// refreshed a minute before it expires and the socket reconnects with the new one.
"use strict";

const API = "/api/v1";
const MAX_ROWS = 100;
const CHART_POINTS = 300; // seconds shown in the chart
const $ = (id) => document.getElementById(id);

const session = { access: null, refresh: null, user: null, timer: null };
let socket = null;
const points = []; // {rps, errorRate}

// --- HTTP ------------------------------------------------------------------------------------

async function call(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (session.access) headers.Authorization = `Bearer ${session.access}`;
  const response = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) throw Object.assign(new Error(data?.message || response.statusText), { data });
  return data;
}

function expiresInMs(token) {
  const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  return payload.exp * 1000 - Date.now();
}

function keepFresh() {
  clearTimeout(session.timer);
  const wait = Math.max(5000, expiresInMs(session.access) - 60000);
  session.timer = setTimeout(async () => {
    try {
      const pair = await call("POST", "/auth/refresh", { refreshToken: session.refresh });
      session.access = pair.accessToken;
      session.refresh = pair.refreshToken;
      if (socket) { socket.auth = { token: session.access }; }
      keepFresh();
    } catch (error) {
      logout(`Session ended: ${error.message}`);
    }
  }, wait);
}

// --- login -----------------------------------------------------------------------------------

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const answer = await call("POST", "/auth/login",
      { email: $("email").value, password: $("password").value });
    session.access = answer.accessToken;
    session.refresh = answer.refreshToken;
    session.user = answer.user;
    $("password").value = "";
    start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

$("logout").addEventListener("click", () => logout(""));

function logout(message) {
  if (socket) socket.disconnect();
  socket = null;
  if (session.refresh && session.access) {
    call("POST", "/auth/logout", { refreshToken: session.refresh }).catch(() => {});
  }
  clearTimeout(session.timer);
  Object.assign(session, { access: null, refresh: null, user: null });
  $("dashboard").hidden = true;
  $("session").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

function start() {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("session").hidden = false;
  $("who").textContent = `${session.user.email} (${session.user.role})`;
  $("requests").replaceChildren();
  $("alerts").replaceChildren();
  points.length = 0;
  keepFresh();
  loadAlerts();
  connect();
}

// --- live ------------------------------------------------------------------------------------

function connect() {
  socket = io("/monitor", { auth: { token: session.access }, transports: ["websocket"] });
  socket.on("connect", () => { $("link").textContent = "live"; $("link").className = "pill online"; });
  socket.on("disconnect", (reason) => {
    $("link").textContent = "offline"; $("link").className = "pill";
    // the hub ends a socket when the token it connected with expires; the client does not
    // come back by itself after the server's disconnect: with the refreshed token, it does
    if (reason === "io server disconnect" && session.access) {
      socket.auth = { token: session.access };
      socket.connect();
    }
  });
  socket.on("connect_error", (error) => {
    $("link").textContent = error.data?.error || "offline";
    if (error.data?.error === "UNAUTHORIZED") logout("Please log in again");
  });
  socket.on("connections:active", (data) => { $("connections").textContent = data.count; });
  socket.on("log:entry", addRequest);
  socket.on("log:dropped", (data) => {
    $("dropped").textContent = `(${data.count} not shown in the last second)`;
  });
  socket.on("stats", showStats);
  socket.on("alert:new", (alert) => addAlert(alert, true));
}

function addRequest(entry) {
  const row = document.createElement("tr");
  const cells = [new Date().toLocaleTimeString(), entry.method, entry.path, entry.status,
    `${entry.latency} ms`, entry.userId || "-"];
  for (const value of cells) {
    const cell = document.createElement("td");
    cell.textContent = value;
    row.append(cell);
  }
  row.children[3].className = `s${String(entry.status)[0]}`;
  row.children[2].title = entry.path;
  const body = $("requests");
  body.prepend(row);
  while (body.children.length > MAX_ROWS) body.lastChild.remove();
  $("dropped").textContent = "";
}

function showStats(stats) {
  $("rps").textContent = stats.rps;
  $("error-rate").textContent = `${stats.errorRate} %`;
  for (const name of ["p50", "p95", "p99"]) $(name).textContent = `${stats[name]} ms`;
  points.push({ rps: stats.rps, errorRate: stats.errorRate });
  if (points.length > CHART_POINTS) points.shift();
  drawChart();
}

function drawChart() {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#e4e7ec";
  ctx.lineWidth = 1;
  for (let i = 1; i < 4; i++) {
    ctx.beginPath(); ctx.moveTo(0, (height * i) / 4); ctx.lineTo(width, (height * i) / 4); ctx.stroke();
  }
  const top = Math.max(1, ...points.map((p) => p.rps)) * 1.1;
  const line = (pick, scale, color) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((point, i) => {
      const x = width - (points.length - 1 - i) * (width / (CHART_POINTS - 1));
      const y = height - (pick(point) / scale) * (height - 4) - 2;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  };
  line((p) => p.rps, top, "#2563eb");
  line((p) => p.errorRate, 100, "#dc2626");
  ctx.fillStyle = "#667085";
  ctx.font = "12px system-ui";
  ctx.fillText(`${top.toFixed(1)} req/s`, 4, 14);
}

// --- alerts ----------------------------------------------------------------------------------

async function loadAlerts() {
  try {
    const page = await call("GET", "/alerts/events?limit=20");
    for (const alert of page.events.reverse()) addAlert(alert, false);
  } catch (error) {
    console.warn("alerts", error);
  }
}

function addAlert(alert, fresh) {
  const item = document.createElement("li");
  item.className = alert.severity + (alert.acknowledged ? " acknowledged" : "");
  const text = document.createElement("span");
  const when = alert.timestamp ? new Date(alert.timestamp).toLocaleTimeString() : "";
  text.textContent = `${when} ${alert.message}${alert.source === "external" ? " (external)" : ""}`;
  item.append(text);
  if (alert.id && !alert.acknowledged && session.user.role !== "VIEWER") {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Acknowledge";
    button.addEventListener("click", async () => {
      try {
        await call("PUT", `/alerts/events/${alert.id}/acknowledge`, {});
        item.classList.add("acknowledged");
        button.remove();
      } catch (error) {
        button.textContent = error.message;
      }
    });
    item.append(button);
  }
  $("alerts").prepend(item);
  if (fresh) item.scrollIntoView({ block: "nearest" });
}
