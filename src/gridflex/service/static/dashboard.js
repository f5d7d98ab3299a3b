// gridflex dashboard: polls the API and redraws; no build step, no external libraries.
"use strict";

// With api.protect_reads the page logs in once: the token goes in a POST body, the server answers
// with an HttpOnly read-only cookie; the token is never put into a URL.
const HISTORY_S = 900;
const points = []; // {t, power, target}

async function get(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (r.status === 401) document.getElementById("login").hidden = false;
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const field = document.getElementById("login-token");
  const r = await fetch("/api/v1/session", {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json" }, body: JSON.stringify({ token: field.value }),
  });
  field.value = "";
  document.getElementById("login-error").textContent = r.ok ? "" : "wrong token";
  if (r.ok) { document.getElementById("login").hidden = true; refresh(); }
});

const kw = (w) => (w === null || w === undefined ? "–" : (w / 1000).toFixed(1) + " kW");
const hhmmss = (t) => new Date(t * 1000).toISOString().slice(11, 19);
const when = (iso) => iso.replace("T", " ").slice(0, 19);

function fillTable(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
    return tr;
  }));
}

function addPoint(t, power, target) {
  if (points.length && t <= points[points.length - 1].t) return;
  points.push({ t, power, target });
  while (points.length && points[0].t < t - HISTORY_S) points.shift();
}

function drawChart() {
  const canvas = document.getElementById("power-chart");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 70, R = 10, T = 10, B = 30;
  ctx.clearRect(0, 0, W, H);
  canvas.dataset.points = String(points.length);
  if (points.length < 2) return;
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  const values = points.flatMap((p) => (p.target === null ? [p.power] : [p.power, p.target]));
  let lo = Math.min(...values), hi = Math.max(...values);
  const pad = Math.max((hi - lo) * 0.1, 1000); lo -= pad; hi += pad;
  const x = (t) => L + ((t - t0) / Math.max(t1 - t0, 1)) * (W - L - R);
  const y = (w) => T + (1 - (w - lo) / (hi - lo)) * (H - T - B);
  ctx.strokeStyle = "#e5e8ec"; ctx.fillStyle = "#5b6675"; ctx.font = "12px system-ui"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const w = lo + ((hi - lo) * i) / 4;
    ctx.beginPath(); ctx.moveTo(L, y(w)); ctx.lineTo(W - R, y(w)); ctx.stroke();
    ctx.fillText(kw(w), 4, y(w) + 4);
  }
  ctx.fillText(hhmmss(t0), L, H - 8); ctx.fillText(hhmmss(t1), W - R - 56, H - 8);
  const line = (key, color) => {
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    let pen = false;
    for (const p of points) {
      if (p[key] === null) { pen = false; continue; }
      if (pen) ctx.lineTo(x(p.t), y(p[key])); else ctx.moveTo(x(p.t), y(p[key]));
      pen = true;
    }
    ctx.stroke();
  };
  line("target", "#dc2626");
  line("power", "#2563eb");
}

async function refresh() {
  try {
    const [status, events, jobs, decisions] = await Promise.all([
      get("/api/v1/status"), get("/api/v1/events"), get("/api/v1/jobs"), get("/api/v1/decisions?limit=10"),
    ]);
    const badge = document.getElementById("site-state");
    const state = status.degraded ? "degraded" : status.active_events.length ? "under event" : "normal";
    badge.textContent = state + (status.degraded && status.age_s !== null ? ` (reading ${status.age_s.toFixed(0)} s old)` : "");
    badge.className = "badge " + (status.degraded ? "down" : status.active_events.length ? "event" : "ok");
    badge.title = (status.degraded_reasons || []).join("; ");
    const power = document.getElementById("site-power");
    power.textContent = kw(status.site_power_w)
      + (status.estimated ? " (estimated)" : "") + (status.degraded ? " (stale)" : "");
    power.title = "read from " + (status.site_power_source || "the drivers");
    document.getElementById("target").textContent = status.target_w === null ? "none" : kw(status.target_w);
    document.getElementById("active-count").textContent = String(status.active_events.length);
    document.getElementById("driver").textContent = (status.driver || "–") + (status.driver_ok ? "" : " (unhealthy)");
    if (status.t_s !== null) addPoint(status.t_s, status.site_power_w, status.target_w);
    drawChart();
    const now = Date.now() / 1000;
    fillTable("events", events.filter((e) => e.status === "active" && Date.parse(e.end) / 1000 > now - 3600)
      .map((e) => [e.id, Date.parse(e.start) / 1000 > now ? "upcoming" : Date.parse(e.end) / 1000 < now ? "ended" : "active",
        when(e.start), when(e.end), e.ramp_s + " s",
        e.target.power_w !== null ? kw(e.target.power_w) : "−" + (e.target.reduction * 100).toFixed(0) + " %", e.source]));
    const plan = Object.fromEntries(status.jobs.map((j) => [j.id, j]));
    fillTable("jobs", jobs.map((j) => [j.id, j.flex_tier, j.gpus,
      plan[j.id] ? plan[j.id].cap_w.toFixed(0) + " W" : "–", plan[j.id] ? (plan[j.id].active * 100).toFixed(0) + " %" : "–",
      plan[j.id] ? kw(plan[j.id].power_w) : "–", (j.flex_budget_used * 100).toFixed(2) + " %"]));
    if (status.miners && status.miners.length) {
      document.getElementById("miners-section").hidden = false;
      fillTable("miners", status.miners.map((m) => [m.id, kw(m.power_w), m.mode]));
    }
    fillTable("decisions", decisions.slice().reverse().map((d) => [hhmmss(d.t_s), kw(d.site_power_w),
      d.target_w === null ? "none" : kw(d.target_w), kw(d.it_power_w), d.active_events.join(", "), d.notes.join("; ")]));
    return (status.interval_s || 2) * 1000;
  } catch (err) {
    const badge = document.getElementById("site-state");
    badge.textContent = "unreachable: " + err.message; badge.className = "badge down";
    return 5000;
  }
}

async function loop() {
  const wait = await refresh();
  setTimeout(loop, Math.min(wait, 2000));
}

get("/api/v1/decisions?limit=450").then((ds) => ds.forEach((d) => addPoint(d.t_s, d.site_power_w, d.target_w)))
  .catch(() => {}).finally(loop);
