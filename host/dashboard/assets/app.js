// Wingate live dashboard: reads the state stream (Server-Sent Events at
// /dashboard/events) and draws it. Plain JavaScript, SVG charts drawn here.
"use strict";

const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#bc8cff", "#f778ba", "#39c5cf", "#ff7b72", "#a5d6ff", "#7ee787", "#e3b341"];
const DASH = "—";
let updates = 0;

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

function fmtDur(s) {
  if (s === null || s === undefined || !isFinite(s) || s <= 0) return DASH;
  if (s < 1e-3) return (s * 1e6).toFixed(s < 1e-5 ? 2 : 0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : s < 0.1 ? 1 : 0) + " ms";
  return s.toFixed(2) + " s";
}
function fmtPct(r, digits) {
  if (r === null || r === undefined || !isFinite(r)) return DASH;
  return (r * 100).toFixed(digits === undefined ? 1 : digits) + "%";
}
function fmtNum(n) {
  if (n === null || n === undefined || !isFinite(n)) return DASH;
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  if (Number.isInteger(n)) return String(n);
  return n < 10 ? n.toFixed(2) : n.toFixed(1);
}
function fmtUSD(v) {
  if (v === null || v === undefined || !isFinite(v)) return DASH;
  if (v === 0) return "$0";
  if (Math.abs(v) < 0.01) return "$" + v.toFixed(5);
  if (Math.abs(v) < 10) return "$" + v.toFixed(3);
  return "$" + v.toFixed(2);
}
function fmtAgo(iso) {
  if (!iso) return DASH;
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}
function fmtUptime(s) {
  if (!isFinite(s)) return DASH;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h > 0 ? h + "h " + m + "m" : m > 0 ? m + "m " + sec + "s" : sec + "s";
}
function cls(v, warn, bad, higherIsBad) {
  if (v === null || v === undefined || !isFinite(v)) return "";
  if (higherIsBad) return v >= bad ? "bad" : v >= warn ? "warn" : "ok";
  return v <= bad ? "bad" : v <= warn ? "warn" : "ok";
}
function textCls(c) { return c === "bad" ? "badc" : c === "warn" ? "warnc" : c === "ok" ? "good" : ""; }
function bar(ratio, color, label) {
  const w = Math.max(0, Math.min(1, ratio || 0)) * 100;
  return `<div class="bar"><span style="width:${w.toFixed(1)}%;background:${color}"></span><b>${label}</b></div>`;
}
function ratioColor(r, good, fair) { return r >= good ? "rgba(63,185,80,.55)" : r >= fair ? "rgba(210,153,34,.55)" : "rgba(248,81,73,.55)"; }

// lineChart draws series (arrays of numbers, null for gaps) as an SVG.
function lineChart(el, series, opt) {
  const W = 600, H = 170, L = 52, R = 10, T = 10, B = 22;
  const n = Math.max(0, ...series.map((s) => s.values.length));
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && isFinite(v)) max = Math.max(max, v);
  const has = n > 0 && series.some((s) => s.values.some((v) => v !== null && v > 0));
  if (opt.minMax) max = Math.max(max, opt.minMax);
  max = niceMax(max || 1);
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  let svg = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img">`;
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4, yy = y(v);
    svg += `<line class="axis" x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}" stroke-width="${k === 0 ? 1 : 0.5}"/>`;
    svg += `<text class="tick" x="${L - 6}" y="${yy + 3}" text-anchor="end">${esc(opt.yFmt(v))}</text>`;
  }
  if (opt.threshold && opt.threshold <= max) {
    const yy = y(opt.threshold);
    svg += `<line x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}" stroke="#f85149" stroke-dasharray="4 4" stroke-width="1"/>`;
  }
  (opt.xTicks || []).forEach(([i, label]) => {
    svg += `<text class="tick" x="${x(i)}" y="${H - 6}" text-anchor="${i === 0 ? "start" : i === n - 1 ? "end" : "middle"}">${esc(label)}</text>`;
  });
  if (!has) {
    svg += `<text class="none" x="${(W + L) / 2}" y="${H / 2}" text-anchor="middle">${esc(opt.empty || "waiting for traffic")}</text>`;
  }
  series.forEach((s) => {
    let d = "", pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !isFinite(v)) { pen = false; return; }
      d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
    });
    if (!d) return;
    if (opt.area) {
      svg += `<path d="${d}L${x(n - 1)} ${y(0)}L${x(0)} ${y(0)}Z" fill="${s.color}" fill-opacity="0.15" stroke="none"/>`;
    }
    svg += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2" vector-effect="non-scaling-stroke" stroke-linejoin="round"/>`;
    // A point with no neighbour draws no line: mark it.
    s.values.forEach((v, i) => {
      const gap = (j) => j < 0 || j >= s.values.length || s.values[j] === null || !isFinite(s.values[j]);
      if (v !== null && isFinite(v) && gap(i - 1) && gap(i + 1)) {
        svg += `<circle cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3.5" fill="${s.color}"/>`;
      }
    });
  });
  svg += "</svg>";
  let legend = "";
  if (opt.legend && series.length) {
    legend = `<div class="legend">` + series.map((s) => `<span><i style="background:${s.color}"></i>${esc(s.name)}</span>`).join("") + `</div>`;
  }
  el.innerHTML = svg + legend;
}
function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
function sparkline(values) {
  const W = 120, H = 22, n = values.length;
  const max = Math.max(1, ...values.filter((v) => v !== null));
  let d = "";
  values.forEach((v, i) => { d += (i ? "L" : "M") + ((i * W) / Math.max(1, n - 1)).toFixed(1) + " " + (H - 1 - ((v || 0) * (H - 2)) / max).toFixed(1); });
  return `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}"><path d="${d}" fill="none" stroke="#58a6ff" stroke-width="1.5"/></svg>`;
}

function setKpi(name, value, sub, state) {
  const el = document.querySelector(`[data-kpi="${name}"]`);
  el.className = "kpi " + (state || "");
  $("k-" + name).textContent = value;
  if (sub !== undefined) $("k-" + name + "-s").textContent = sub;
}

function render(st) {
  const m = st.metrics || {};
  const req = m.requests || { routes: [], per_second: [] };
  const routes = req.routes || [];
  $("uptime").textContent = fmtUptime(m.uptime_s);
  $("updated").textContent = new Date(m.time || Date.now()).toLocaleTimeString();
  document.body.dataset.updates = String(++updates);

  // KPIs.
  setKpi("rate", fmtNum(Math.round((req.rate || 0) * 10) / 10), routes.length + " route" + (routes.length === 1 ? "" : "s") + " · last minute");
  let worst = null;
  for (const r of routes) if (r.m1.count > 0 && (!worst || r.m1.p95 > worst.m1.p95)) worst = r;
  if (worst) setKpi("p95", fmtDur(worst.m1.p95), worst.method + " " + worst.route, cls(worst.m1.p95, 0.5, 1, true));
  else setKpi("p95", DASH, "no traffic in the last minute", "");

  const cache = m.cache || { routes: [], redis: {} };
  let hits = 0, lookups = 0;
  for (const c of cache.routes || []) { hits += c.hit_ratio * c.lookups; lookups += c.lookups; }
  if (lookups > 0) setKpi("cache", fmtPct(hits / lookups), fmtNum(lookups) + " lookups · last 5 min", cls(hits / lookups, 0.9, 0.85));
  else setKpi("cache", DASH, "no cacheable traffic yet", "");

  const pool = m.pool;
  if (pool) setKpi("pool", fmtPct(pool.utilisation, 0), "health " + pool.health + " · " + pool.acquired + "/" + pool.max + " in use",
    pool.utilisation > 0.8 || pool.health < 80 ? "bad" : pool.utilisation > 0.6 || pool.health < 90 ? "warn" : "ok");
  else setKpi("pool", "n/a", "in-memory store (no pool)", "");

  const pols = m.policies || [];
  let dec = 0, fb = 0;
  for (const p of pols) { dec += p.decisions; fb += p.fallbacks; }
  if (dec > 0) setKpi("policy", fmtPct(fb / dec, 2), fmtNum(dec) + " decisions · last 5 min", cls(fb / dec, 0.005, 0.01, true));
  else setKpi("policy", DASH, "no decisions yet", "");

  const ai = m.ai || {};
  const tot = ai.total || {};
  if (tot.baseline_usd > 0) setKpi("ai", fmtPct(tot.saving_ratio, 0), fmtUSD(tot.cost_usd) + " vs " + fmtUSD(tot.baseline_usd), cls(tot.saving_ratio, 0.5, 0.4));
  else setKpi("ai", DASH, "no AI traffic yet", "");

  // Charts.
  const secs = req.per_second || [];
  lineChart($("chart-rate"), [{ name: "all routes", color: COLORS[0], values: secs }].concat(
    routes.slice(0, 6).map((r, i) => ({ name: r.method + " " + r.route, color: COLORS[(i + 1) % COLORS.length], values: r.per_second }))),
  { yFmt: (v) => fmtNum(Math.round(v * 10) / 10), area: false, legend: routes.length > 0, xTicks: [[0, "-60 s"], [30, "-30 s"], [secs.length - 1, "now"]] });
  const p95s = routes.filter((r) => r.m5.count > 0).slice(0, 8);
  lineChart($("chart-p95"), p95s.map((r, i) => ({ name: r.method + " " + r.route, color: COLORS[i % COLORS.length], values: r.p95 })),
    { yFmt: (v) => fmtDur(v) === DASH ? "0" : fmtDur(v), legend: true, threshold: 1, xTicks: [[0, "-5 min"], [14, "-2.5 min"], [29, "now"]] });

  // Routes table.
  $("routes").innerHTML = routes.length === 0
    ? `<tr><td colspan="9" class="empty">No requests yet — routes appear here as soon as they are served.</td></tr>`
    : routes.map((r) => {
      const e = r.m1.count > 0 ? r.m1.errors / r.m1.count : 0;
      const p95c = textCls(cls(r.m1.p95, 0.5, 1, true));
      return `<tr><td class="route"><span class="method">${esc(r.method)}</span>${esc(r.route)}</td>` +
        `<td class="n v">${fmtNum(Math.round(r.m1.rate * 100) / 100)}</td><td class="n">${fmtDur(r.m1.p50)}</td>` +
        `<td class="n ${p95c}">${fmtDur(r.m1.p95)}</td><td class="n">${fmtDur(r.m1.p99)}</td>` +
        `<td class="n">${fmtDur(r.m5.p95)}</td><td class="n">${fmtDur(r.m5.p99)}</td>` +
        `<td class="n ${e > 0 ? "badc" : ""}">${r.m1.count > 0 ? fmtPct(e) : DASH}</td><td>${sparkline(r.per_second)}</td></tr>`;
    }).join("");

  // Cache.
  const redis = cache.redis || {};
  const rb = $("redis");
  rb.className = "badge " + (!redis.configured ? "" : redis.up ? "ok" : "bad");
  rb.textContent = !redis.configured ? "Redis not configured" : redis.up ? "Redis up" : "Redis down (" + (redis.state || "open") + ")";
  const croutes = cache.routes || [];
  $("cache").innerHTML = croutes.length === 0
    ? `<tr><td colspan="6" class="empty">No cacheable requests yet.</td></tr>`
    : croutes.map((c) => {
      const tier = (name) => (c.tiers || []).find((t) => t.tier === name);
      const cell = (t) => t && t.lookups > 0 ? bar(t.hit_ratio, ratioColor(t.hit_ratio, 0.85, 0.6), fmtPct(t.hit_ratio)) : `<span class="muted">${DASH}</span>`;
      return `<tr><td class="route">${esc(c.route)}</td>` +
        `<td class="v">${c.lookups > 0 ? bar(c.hit_ratio, ratioColor(c.hit_ratio, 0.85, 0.6), fmtPct(c.hit_ratio)) : DASH}</td>` +
        `<td>${cell(tier("local"))}</td><td>${cell(tier("redis"))}</td>` +
        `<td class="n">${fmtNum(c.lookups)}</td><td class="n">${fmtNum(c.bypass)}</td></tr>`;
    }).join("");

  // Pool.
  if (!pool) {
    $("pool").innerHTML = `<div class="empty">In-memory store: no connection pool. Set DATABASE_URL to use PostgreSQL.</div>`;
  } else {
    const uc = pool.utilisation > 0.8 ? "#f85149" : pool.utilisation > 0.6 ? "#d29922" : "#3fb950";
    const hc = pool.health < 80 ? "#f85149" : pool.health < 90 ? "#d29922" : "#3fb950";
    $("pool").innerHTML = `<div class="meters">` +
      `<div class="meter"><div class="ml">Utilisation</div><div class="mv v">${fmtPct(pool.utilisation, 0)}</div>${bar(pool.utilisation, uc, "")}</div>` +
      `<div class="meter"><div class="ml">Health score</div><div class="mv v">${pool.health}<span class="muted"> / 100</span></div>${bar(pool.health / 100, hc, "")}</div></div>` +
      `<div class="facts">` +
      `<div class="fact"><div class="fl">in use</div><div class="fv">${pool.acquired} / ${pool.max}</div></div>` +
      `<div class="fact"><div class="fl">idle</div><div class="fv">${pool.idle}</div></div>` +
      `<div class="fact"><div class="fl">recent wait</div><div class="fv">${pool.recent_acquire_wait_ns > 0 ? fmtDur(pool.recent_acquire_wait_ns / 1e9) : "0"}</div></div>` +
      `<div class="fact"><div class="fl">database</div><div class="fv ${pool.reachable ? "good" : "badc"}">${pool.reachable ? "reachable" : "unreachable"}</div></div></div>`;
  }

  // Policies.
  $("policies").innerHTML = pols.length === 0
    ? `<tr><td colspan="6" class="empty">No policy decisions yet.</td></tr>`
    : pols.map((p) => {
      const fr = p.decisions > 0 ? p.fallback_ratio : null;
      const outs = Object.entries(p.outcomes || {}).filter(([k, v]) => k !== "ok" && v > 0).map(([k, v]) => k + " " + v).join(", ");
      return `<tr><td><b>${esc(p.kind)}</b></td><td>${esc(p.policy || DASH)} <span class="ver">${esc(p.version || "")}</span>${p.shadow ? ` <span class="muted">shadow ${esc(p.shadow)}</span>` : ""}</td>` +
        `<td class="n v">${fmtNum(Math.round(p.rate * 100) / 100)}</td><td class="n">${fmtDur(p.p50)}</td><td class="n">${fmtDur(p.p99)}</td>` +
        `<td class="n ${textCls(cls(fr, 0.005, 0.01, true))}" title="${esc(outs)}">${fr === null ? DASH : fmtPct(fr, 2) + " (" + fmtNum(p.fallbacks) + ")"}</td></tr>`;
    }).join("");

  // AI.
  if (!(tot.turns > 0)) {
    $("ai").innerHTML = `<div class="empty">No AI traffic yet — cost against the baseline appears after the first chat message.</div>`;
  } else {
    const maxc = Math.max(tot.baseline_usd, tot.cost_usd) || 1;
    let h = `<div class="versus">` +
      `<div class="muted">Actual</div>${bar(tot.cost_usd / maxc, "rgba(88,166,255,.6)", "")}<div class="amt v">${fmtUSD(tot.cost_usd)}</div>` +
      `<div class="muted">Baseline</div>${bar(tot.baseline_usd / maxc, "rgba(139,152,165,.45)", "")}<div class="amt">${fmtUSD(tot.baseline_usd)}</div></div>`;
    h += `<div class="facts">` +
      `<div class="fact"><div class="fl">saved</div><div class="fv ${textCls(cls(tot.saving_ratio, 0.5, 0.4))}">${fmtUSD(tot.saved_usd)} (${fmtPct(tot.saving_ratio, 0)})</div></div>` +
      `<div class="fact"><div class="fl">context tokens saved</div><div class="fv">${fmtNum(tot.tokens_saved)}</div></div>` +
      `<div class="fact"><div class="fl">messages</div><div class="fv">${fmtNum(tot.turns)}</div></div>` +
      `<div class="fact"><div class="fl">tokens in / out</div><div class="fv">${fmtNum(tot.tokens_in)} / ${fmtNum(tot.tokens_out)}</div></div></div>`;
    h += `<table class="t" style="margin-top:10px"><thead><tr><th>Tier</th><th class="n">messages</th><th class="n">calls</th><th class="n">cost</th><th class="n">baseline</th><th class="n">tokens saved</th></tr></thead><tbody>` +
      (ai.tiers || []).map((t) => `<tr><td>${esc(t.tier)}</td><td class="n">${fmtNum(t.turns)}</td><td class="n">${fmtNum(t.calls)}</td><td class="n">${fmtUSD(t.cost_usd)}</td><td class="n">${fmtUSD(t.baseline_usd)}</td><td class="n">${fmtNum(t.tokens_saved)}</td></tr>`).join("") +
      `</tbody></table>`;
    $("ai").innerHTML = h;
  }

  // Alerts.
  const al = st.alerts || { active: [], recent: [] };
  const firing = al.active.filter((a) => a.state === "firing").length;
  const pending = al.active.length - firing;
  const pill = $("alert-pill");
  pill.className = "pill " + (firing > 0 ? "bad" : pending > 0 ? "warn" : "ok");
  pill.textContent = firing > 0 ? firing + " firing" + (pending ? ", " + pending + " pending" : "") : pending > 0 ? pending + " pending" : "no alerts";
  $("alerts-eval").textContent = al.evaluated_at ? "evaluated " + fmtAgo(al.evaluated_at) + " · " + (st.rules || []).length + " rules" : (st.rules || []).length + " rules";
  const row = (a) => {
    const labels = Object.entries(a.labels || {}).map(([k, v]) => k + "=" + v).join(" ");
    const when = a.state === "resolved" ? "resolved " + fmtAgo(a.resolved_at) : a.state === "firing" ? "firing since " + fmtAgo(a.fired_at) : "pending since " + fmtAgo(a.active_at);
    return `<div class="alert-row"><span class="state ${esc(a.state)}">${esc(a.state)}</span><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span>` +
      `<span><b>${esc(a.rule)}</b> ${esc(a.summary || "")} <span class="muted">${esc(labels)}</span></span><span class="muted">${esc(when)}</span></div>`;
  };
  let ah = al.active.length === 0
    ? `<div class="alert-row"><span class="state resolved">all clear</span><span></span><span class="v">No active alerts.</span><span></span></div>`
    : al.active.map(row).join("");
  if ((al.recent || []).length) ah += `<div class="subh">Recently resolved</div>` + al.recent.slice(0, 5).map(row).join("");
  if ((st.rules || []).length) ah += `<div class="rules">Rules: ` + st.rules.map((r) => `<code title="${esc(r.expr)}">${esc(r.name)}</code>`).join(" · ") + `</div>`;
  $("alerts").innerHTML = ah;
}

function connect() {
  const conn = $("conn"), text = $("conn-text");
  const es = new EventSource("/dashboard/events");
  es.addEventListener("open", () => { conn.className = "conn live"; text.textContent = "live"; });
  es.addEventListener("error", () => { conn.className = "conn down"; text.textContent = "reconnecting…"; });
  es.addEventListener("state", (e) => {
    conn.className = "conn live";
    text.textContent = "live";
    try { render(JSON.parse(e.data)); } catch (err) { console.error(err); }
  });
}

render({ metrics: { requests: { routes: [], per_second: [] }, cache: { routes: [] }, policies: [], ai: {} }, alerts: { active: [], recent: [] }, rules: [] });
document.body.dataset.updates = "0";
updates = 0;
connect();
