// igikit supervisor console: one page, no build step, no external resources.
"use strict";

const STYLE_COLOURS = {
  target: "#ffd33d", tracked: "#ffd33d", predicted: "#ff4fd8", boundary: "#39d0ff", truth: "#7ee787", other: "#ffffff",
  risk: "#00e5ff", dose: "#7cfc00",
};
const TRACE_COLOURS = ["#ffd33d", "#ff4fd8", "#7ee787", "#58a6ff"];
// plots with units (TracePlot): no green, which the output-on shading would swallow
const PLOT_COLOURS = ["#ffd33d", "#ff4fd8", "#ff9a3c", "#58a6ff", "#d2a8ff", "#ffffff"];
const TRACE_WINDOW_S = 30;
const MAX_LOG = 300;

const $ = (id) => document.getElementById(id);
let me = null;           // {name, role, csrf, permissions}
let socket = null;
let lastState = null;
const trace = [];        // {t, values, on}
let lastBand = null;
let lastPlot = null;     // the frame's TracePlot: title, units, window (null: the gating defaults)
const stats = { frames: 0, latencies: [], lastFrameId: null };
window.igikitStats = stats;  // read by the browser tests

// ------------------------------------------------------------------ helpers
function fmtTime(wall) {
  return new Date(wall * 1000).toLocaleTimeString([], { hour12: false });
}
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}
function toast(text, bad = false) {
  const t = $("toast");
  t.textContent = text;
  t.className = "toast" + (bad ? " bad" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}
async function post(url, body = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": me ? me.csrf : "" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = {};
  try { data = await response.json(); } catch (e) { /* empty */ }
  if (!response.ok) {
    const what = response.status === 403 ? "Refused (403)" : `Not done (${response.status})`;
    toast(`${what}: ${data.detail || response.statusText}`, true);
  }
  return { ok: response.ok, status: response.status, data };
}
function reason() {
  const r = $("reason").value.trim();
  $("reason").value = "";
  return r;
}

// ------------------------------------------------------------------ login
async function boot() {
  const response = await fetch("/api/me", { credentials: "same-origin" });
  if (response.status === 200) {
    me = await response.json();
    showConsole();
  } else {
    showLogin();
  }
}
function showLogin() {
  $("login-view").hidden = false;
  $("console-view").hidden = true;
  $("who").hidden = true;
  $("login-name").focus();
}
$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  const response = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: $("login-name").value, password: $("login-password").value }),
    credentials: "same-origin",
  });
  $("login-password").value = "";
  if (!response.ok) {
    $("login-error").textContent = "Wrong name or password.";
    return;
  }
  me = await response.json();
  showConsole();
});
$("logout").addEventListener("click", async () => {
  await post("/api/logout");
  if (socket) socket.close();
  me = null;
  showLogin();
});

function showConsole() {
  $("login-view").hidden = true;
  $("console-view").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = me.name;
  $("who-role").textContent = me.role;
  const can = new Set(me.permissions);
  $("role-note").textContent = me.role === "observer"
    ? "You are an observer: you can watch; actions will be refused and logged."
    : (can.has("set_autonomy") ? "You may act and change the autonomy level."
      : "You may act; changing the autonomy level needs a physicist.");
  connect();
}

// ------------------------------------------------------------------ live connection
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn live"; };
  socket.onclose = (event) => {
    $("conn").textContent = "offline"; $("conn").className = "conn";
    if (event.code === 4401) { showLogin(); return; }
    if (me) setTimeout(connect, 1000);
  };
  socket.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "frame") onFrame(msg);
    else if (msg.type === "event") addLog(msg.event, true);
    else if (msg.type === "state") onState(msg.state);
    else if (msg.type === "scene" || msg.type === "tool") onNavigation(msg);
    else if (msg.type === "hello") {
      $("title").textContent = msg.title || "";
      $("log").replaceChildren();
      for (const e of msg.events) addLog(e, true);
    }
  };
}

// ------------------------------------------------------------------ 3D navigation (static/scene3d.js)
let scene3d = null;  // the module, imported with the first scene: cine sessions never load three.js
function onNavigation(msg) {
  if (!scene3d) {
    scene3d = import("/static/scene3d.js");
    scene3d.catch((error) => toast(`3D view failed to load: ${error}`, true));
  }
  scene3d.then((module) => module.receive(msg), () => {});
}

// ------------------------------------------------------------------ frame
const frameImage = new Image();
let pendingFrame = null;
let drawing = false;
function onFrame(msg) {
  pendingFrame = msg;
  if (!drawing) drawNext();
}
function drawNext() {
  const msg = pendingFrame;
  if (!msg) return;
  pendingFrame = null;
  drawing = true;
  frameImage.onload = () => {
    drawFrame(msg);
    stats.frames += 1;
    stats.lastFrameId = msg.frame_id;
    const latency = Date.now() - msg.published * 1000;
    stats.latencies.push(latency);
    if (stats.latencies.length > 500) stats.latencies.shift();
    const recent = stats.latencies.slice(-40).slice().sort((a, b) => a - b);
    $("latency").textContent = recent[Math.floor(recent.length / 2)].toFixed(0);
    $("frame-count").textContent = String(stats.frames);
    drawing = false;
    drawNext();
  };
  frameImage.onerror = () => { drawing = false; drawNext(); };
  frameImage.src = msg.image;
  updateStatus(msg);
  addTrace(msg);
}
function drawFrame(msg) {
  const canvas = $("frame");
  const scale = Math.max(1, Math.floor(512 / Math.max(msg.width, msg.height)));
  const w = msg.width * scale, h = msg.height * scale;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(frameImage, 0, 0, w, h);
  const legend = [];
  for (const ov of msg.overlays) {
    const colour = STYLE_COLOURS[ov.style] || STYLE_COLOURS.other;
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = ov.style === "boundary" ? 2 : 2.5;
    ctx.setLineDash(ov.style === "boundary" ? [8, 5] : (ov.style === "predicted" ? [3, 3] : []));
    // pixel centres: (x + 0.5) * scale
    for (const path of ov.paths) {
      if (ov.kind === "point") {
        const [x, y] = path[0];
        const cx = (x + 0.5) * scale, cy = (y + 0.5) * scale;
        ctx.setLineDash([]);
        ctx.beginPath();
        ctx.arc(cx, cy, 5, 0, 2 * Math.PI);
        ctx.stroke();
        ctx.beginPath();
        ctx.moveTo(cx - 10, cy); ctx.lineTo(cx + 10, cy); ctx.moveTo(cx, cy - 10); ctx.lineTo(cx, cy + 10);
        ctx.stroke();
      } else {
        ctx.beginPath();
        path.forEach(([x, y], i) => {
          const px = (x + 0.5) * scale, py = (y + 0.5) * scale;
          if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
        });
        ctx.closePath();
        ctx.stroke();
      }
    }
    legend.push([ov.label, colour, ov.style]);
  }
  ctx.setLineDash([]);
  const key = legend.map((l) => l[0]).join("|");
  if ($("legend").dataset.key !== key) {
    $("legend").dataset.key = key;
    $("legend").replaceChildren(...legend.map(([label, colour, style]) => {
      const swatch = el("i");
      swatch.style.background = style === "boundary"
        ? `repeating-linear-gradient(90deg, ${colour} 0 6px, transparent 6px 10px)` : colour;
      return el("span", {}, swatch, label);
    }));
  }
  drawHeatLegend(msg.heatmap);
  $("frame-id").textContent = String(msg.frame_id);
  $("frame-time").textContent = msg.t.toFixed(2);
}
function drawHeatLegend(heat) {
  const box = $("heat-legend");
  const key = heat ? JSON.stringify(heat) : "";
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.hidden = !heat;
  stats.heatLegend = heat || null;
  if (!heat) { box.replaceChildren(); return; }
  const span = heat.high - heat.low;
  const bar = el("div", { class: "heat-bar" });
  bar.style.background = "linear-gradient(90deg, "
    + heat.stops.map(([v, c]) => `${c} ${(100 * (v - heat.low) / span).toFixed(1)}%`).join(", ") + ")";
  if (heat.transparent_below !== null && heat.transparent_below > heat.low) {
    const clear = el("i", { class: "heat-clear", title: `not drawn below ${heat.transparent_below}` });
    clear.style.width = `${(100 * (heat.transparent_below - heat.low) / span).toFixed(1)}%`;
    bar.append(clear);
  }
  const ticks = el("div", { class: "heat-ticks" });
  for (let k = 0; k <= 4; k++) ticks.append(el("span", {}, (heat.low + (k * span) / 4).toFixed(0)));
  const note = heat.transparent_below === null ? "" : ` · clear below ${heat.transparent_below.toFixed(0)} ${heat.units}`;
  box.replaceChildren(el("div", { class: "heat-title" }, `${heat.label} (${heat.units})${note}`), bar, ticks);
}
function updateStatus(msg) {
  const beam = $("beam");
  if (msg.beam_on === null) { beam.className = "beam unknown"; beam.textContent = msg.output || "NO OUTPUT"; }
  else {
    beam.className = "beam " + (msg.beam_on ? "on" : "hold");
    beam.textContent = (msg.output || (msg.beam_on ? "on" : "hold")).toUpperCase();
  }
  const c = msg.confidence;
  $("conf-value").textContent = c === null ? "–" : c.toFixed(2);
  $("conf-bar").style.width = c === null ? "0" : `${Math.round(c * 100)}%`;
  const threshold = lastState ? lastState.handover_confidence : 0.6;
  $("conf-bar").className = c !== null && c < threshold ? "low" : "";
  $("explanation").textContent = msg.explanation || "";
}

// ------------------------------------------------------------------ trajectory
function addTrace(msg) {
  trace.push({ t: msg.t, values: msg.trace, on: msg.beam_on === true });
  lastBand = msg.band;
  lastPlot = msg.plot || null;
  const cutoff = msg.t - traceWindow();
  while (trace.length && (trace[0].t < cutoff || trace[0].t > msg.t)) trace.shift();
  stats.lastTrace = msg.trace;
  if (lastPlot && $("trace-title").textContent !== lastPlot.title) {
    $("trace-title").textContent = lastPlot.title;
    $("trace-caption").textContent = `(last ${lastPlot.window_s.toFixed(0)} s; green: output on)`;
  }
  drawTrace();
}
function traceWindow() { return lastPlot ? lastPlot.window_s : TRACE_WINDOW_S; }
function niceStep(span) {
  for (const s of [5, 10, 15, 30, 60, 120, 300, 600]) if (span / s <= 7) return s;
  return 1200;
}
function drawTrace() {
  const canvas = $("trace");
  const w = canvas.clientWidth || 900, h = canvas.clientHeight || 180;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  if (trace.length < 2) return;
  const names = Object.keys(trace[trace.length - 1].values);
  // one axis per unit (TracePlot): the first unit on the left, the others on the right
  const units = lastPlot ? lastPlot.units : {};
  const axisUnits = [];
  for (const n of names) if (!axisUnits.includes(units[n] || "")) axisUnits.push(units[n] || "");
  const axisOf = (n) => Math.min(axisUnits.indexOf(units[n] || ""), 1);
  const axes = [0, 1].map(() => ({ lo: Infinity, hi: -Infinity, pad: 1 }));
  for (const p of trace) for (const n of names) {
    const v = p.values[n];
    const a = axes[axisOf(n)];
    if (v !== null && v !== undefined) { a.lo = Math.min(a.lo, v); a.hi = Math.max(a.hi, v); }
  }
  if (lastBand) { axes[0].lo = Math.min(axes[0].lo, lastBand[0]); axes[0].hi = Math.max(axes[0].hi, lastBand[1]); }
  for (const a of axes) {
    if (!isFinite(a.lo)) { a.lo = -1; a.hi = 1; }
    a.pad = Math.max(axisUnits.length > 1 && a === axes[1] ? 0.05 : 1, (a.hi - a.lo) * 0.1);
    a.lo -= a.pad; a.hi += a.pad;
  }
  const twoAxes = axisUnits.length > 1;
  const left = 44, right = twoAxes ? 44 : 8, top = 8, bottom = 22;
  const span = traceWindow();
  // fills from the left for the first window, then scrolls
  const t0 = Math.max(trace[0].t, trace[trace.length - 1].t - span), t1 = t0 + span;
  const X = (t) => left + ((t - t0) / span) * (w - left - right);
  const Y = (v, axis = 0) => top + (1 - (v - axes[axis].lo) / (axes[axis].hi - axes[axis].lo)) * (h - top - bottom);
  // output-on shading
  ctx.fillStyle = "rgba(46, 160, 67, 0.28)";
  for (let i = 0; i < trace.length - 1; i++) {
    if (trace[i].on) ctx.fillRect(X(trace[i].t), top, X(trace[i + 1].t) - X(trace[i].t) + 0.5, h - top - bottom);
  }
  if (lastBand) {
    ctx.strokeStyle = "#39d0ff"; ctx.setLineDash([6, 4]); ctx.lineWidth = 1;
    for (const b of lastBand) { ctx.beginPath(); ctx.moveTo(left, Y(b)); ctx.lineTo(w - right, Y(b)); ctx.stroke(); }
    ctx.setLineDash([]);
  }
  // axes
  ctx.fillStyle = "#8b98a9"; ctx.font = "11px system-ui"; ctx.strokeStyle = "#2b3544";
  const a0 = axes[0];
  for (const v of [a0.lo + a0.pad, (a0.lo + a0.hi) / 2, a0.hi - a0.pad]) {
    ctx.fillText(v.toFixed(1), 4, Y(v) + 4);
    ctx.beginPath(); ctx.moveTo(left, Y(v)); ctx.lineTo(w - right, Y(v)); ctx.stroke();
  }
  if (twoAxes) {
    const a1 = axes[1];
    for (const v of [a1.lo + a1.pad, (a1.lo + a1.hi) / 2, a1.hi - a1.pad]) ctx.fillText(v.toFixed(2), w - right + 4, Y(v, 1) + 4);
    ctx.fillText(axisUnits[0], 4, h - 6);
    ctx.fillText(axisUnits.slice(1).join(", "), w - right + 12, h - 6);
  }
  const step = niceStep(span);
  for (let s = Math.ceil(t0 / step) * step; s <= t1; s += step) {
    if (twoAxes && X(s) + 16 > w - right) continue;  // leave the right axis its unit
    ctx.fillText(`${s.toFixed(0)} s`, X(s) - 10, h - 6);
  }
  let labelX = left + 8;
  names.forEach((n, k) => {
    const axis = axisOf(n);
    const palette = lastPlot ? PLOT_COLOURS : TRACE_COLOURS;
    ctx.strokeStyle = palette[k % palette.length]; ctx.lineWidth = 1.8;
    ctx.setLineDash(n.startsWith("predicted") ? [4, 3] : (axis === 1 ? [6, 3] : []));
    ctx.beginPath();
    let started = false;
    for (const p of trace) {
      const v = p.values[n];
      if (v === null || v === undefined) { started = false; continue; }
      if (!started) { ctx.moveTo(X(p.t), Y(v, axis)); started = true; } else ctx.lineTo(X(p.t), Y(v, axis));
    }
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = ctx.strokeStyle;
    if (lastPlot) {  // labels side by side, as wide as they are
      const label = n + (axis === 1 ? " →" : "");
      ctx.fillText(label, labelX, top + 12);
      labelX += ctx.measureText(label).width + 18;
    } else ctx.fillText(n, left + 8 + k * 150, top + 12);
  });
}

// ------------------------------------------------------------------ supervision state
let shownLevel = null;
function onState(state) {
  lastState = state;
  $("level").textContent = `${state.level} · ${state.level_label}`;
  $("level-desc").textContent = state.level_description
    + (state.level === 2 ? ` (veto window ${state.veto_window_s} s)` : "");
  // Follow the session's level only when it changes: the periodic state refresh must not undo a
  // level the physicist has picked but not yet applied.
  if (state.level !== shownLevel) { shownLevel = state.level; $("level-select").value = String(state.level); }
  const safe = $("safe");
  safe.hidden = !state.safe_state;
  safe.textContent = state.safe_state ? "SAFE STATE — " + state.safe_state_reasons.join("; ") : "";
  $("pause").disabled = state.paused;
  $("resume").disabled = !state.paused;

  const count = $("alert-count");
  count.textContent = String(state.alerts.length);
  count.className = "count" + (state.alerts.length ? "" : " zero");
  const alerts = state.alerts.map((a) => el("li", { class: a.severity, "data-alert-id": String(a.alert_id) },
    el("div", { class: "head" }, el("span", {}, `Alert ${a.alert_id} · ${a.kind.replace(/_/g, " ")}`),
      el("span", { class: "muted" }, fmtTime(a.raised_wall_s) + (a.occurrences > 1 ? ` ×${a.occurrences}` : ""))),
    el("div", { class: "msg" }, a.message),
    el("div", { class: "actions" }, button("Acknowledge", "ok ack", () => act(`/api/alerts/${a.alert_id}/acknowledge`)))));
  $("alerts").replaceChildren(...(alerts.length ? alerts : [el("li", { class: "empty" }, "No open alert.")]));

  const pending = state.pending.map((p) => el("li", { "data-pending-id": String(p.pending_id), "data-seq": String(p.seq) },
    el("div", { class: "head" }, el("span", {}, `${p.decision}: ${p.value}`),
      el("span", { class: "muted" }, p.kind === "pending" ? `takes effect in ${p.seconds_left.toFixed(1)} s`
        : (p.approver_roles && p.approver_roles.length ? `needs ${p.approver_roles.join(" or ")} approval` : "needs approval"))),
    ...(p.summary && p.summary.length
      ? [el("dl", { class: "summary" }, ...p.summary.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]))] : []),
    el("div", { class: "msg" }, p.explanation + (p.restored ? ` [#${p.seq}]` : "")),
    el("div", { class: "actions" },
      button("Approve", "ok approve", () => act(`/api/pending/${p.pending_id}/approve`)),
      button("Veto", "danger veto", () => act(`/api/pending/${p.pending_id}/veto`)))));
  $("pending").replaceChildren(...(pending.length ? pending : [el("li", { class: "empty" }, "No pending decision.")]));
}
function button(text, cls, onClick) {
  const b = el("button", { type: "button", class: cls }, text);
  b.addEventListener("click", onClick);
  return b;
}
async function act(url, extra = {}) {
  const result = await post(url, { reason: reason(), ...extra });
  if (result.ok) toast("Done.");
  return result;
}
$("pause").addEventListener("click", () => act("/api/pause"));
$("resume").addEventListener("click", () => act("/api/resume"));
$("set-level").addEventListener("click", () => act("/api/autonomy", { level: Number($("level-select").value) }));

// ------------------------------------------------------------------ log
const seen = new Set();
function addLog(e, newestFirst) {
  const key = `${e.wall_time_s}|${e.kind}|${e.seq}|${e.text}`;
  if (seen.has(key)) return;
  seen.add(key);
  const who = e.actor ? ` — ${e.actor} (${e.role})` : "";
  const item = el("li", { class: "entry", "data-kind": e.kind, "data-seq": String(e.seq ?? "") },
    el("time", {}, fmtTime(e.wall_time_s)),
    el("span", { class: `kind k-${e.kind}` }, e.kind.replace(/_/g, " ")),
    el("span", { class: "text" }, e.text + who + (e.seq ? ` [#${e.seq}]` : "")));
  const log = $("log");
  if (newestFirst) log.prepend(item); else log.append(item);
  while (log.children.length > MAX_LOG) log.lastChild.remove();
}

boot();
