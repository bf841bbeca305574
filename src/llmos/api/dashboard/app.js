// LLM OS dashboard: plain JS, no build step.
// Map: token handling -> api() fetch helper -> renderers (system, runs, processes,
// agents, events) -> live updates over server-sent events (read with fetch so the
// bearer token travels in a header) -> actions (kill, nice, confirm, reject).
// Every value from the server is inserted with textContent, never as HTML.
"use strict";

const state = {
  token: null,            // bearer token (localStorage "llmos.token")
  procs: new Map(),       // pid -> process dict
  runs: new Map(),        // run id -> run dict
  agents: [],
  lastEventId: null,      // for resuming the stream
  refreshTimer: null,     // debounced full refresh after bursts of events
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") n.className = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) n.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

function toast(msg) {
  const t = $("toast");
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

// ── token ──────────────────────────────────────────────────────────────────
function loadToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    localStorage.setItem("llmos.token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem("llmos.token");
}

async function api(method, path, body) {
  const opts = { method, headers: { "Authorization": "Bearer " + state.token } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    const msg = data && (data.message || (data.error && data.error.message)) || ("HTTP " + r.status);
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return data;
}

// ── formatting ─────────────────────────────────────────────────────────────
function fmtNum(x, digits = 1) {
  if (x === null || x === undefined) return "-";
  return Number(x).toFixed(digits);
}
function fmtBytes(n) {
  if (n === null || n === undefined) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}
function fmtJoules(j) {
  if (j === null || j === undefined) return "-";
  return j >= 3600 ? (j / 3600).toFixed(2) + " Wh" : j.toFixed(1) + " J";
}

// ── system ─────────────────────────────────────────────────────────────────
function renderSystem(s) {
  if (!s) return;
  const cpu = s.cpu || {};
  $("cpu").textContent = cpu.utilization === null || cpu.utilization === undefined ? "-" : fmtNum(cpu.utilization * 100, 0) + " %";
  $("cpu-detail").textContent = [cpu.name, cpu.cores ? cpu.cores + " cores" : null].filter(Boolean).join(" · ");
  const mem = s.memory || {};
  if (mem.total_bytes) {
    const used = mem.total_bytes - (mem.available_bytes || 0);
    $("mem").textContent = fmtNum(100 * used / mem.total_bytes, 0) + " %";
    $("mem-detail").textContent = fmtBytes(used) + " of " + fmtBytes(mem.total_bytes);
  }
  const gpus = s.gpus || [];
  if (gpus.length) {
    $("gpu").textContent = gpus.map((g) => g.utilization === null ? "?" : fmtNum(g.utilization * 100, 0) + " %").join(" / ");
    $("gpu-detail").textContent = gpus.map((g) => g.name + (g.memory_total_bytes ? " " + fmtBytes(g.memory_total_bytes - (g.memory_available_bytes || 0)) + " used" : "")).join("; ");
  } else {
    $("gpu").textContent = "none";
    $("gpu-detail").textContent = (s.notes || []).filter((n) => /GPU|NVML/i.test(n)).join("; ");
  }
  const cl = s.cluster;
  $("nodes-card").hidden = !cl;
  if (cl) {
    const live = (cl.nodes || []).filter((n) => n.alive);
    $("nodes").textContent = live.length + " live";
    $("nodes-detail").textContent = live.map((n) => n.name + " " + n.address + ": " + fmtNum(n.cpus_free || 0, 0) + "/" + fmtNum(n.cpus, 0) + " CPU free" + (n.gpus ? ", " + fmtNum(n.gpus_free || 0, 0) + "/" + fmtNum(n.gpus, 0) + " GPU" : "")).join("; ");
  }
  const en = s.energy || [];
  if (en.length) {
    const total = en.reduce((a, r) => a + (r.joules || 0), 0);
    const labels = [...new Set(en.map((r) => r.label))].join("+");
    $("energy").textContent = fmtJoules(total);
    $("energy-detail").textContent = labels + " · " + en.map((r) => r.domain).join(", ");
  } else {
    $("energy").textContent = "-";
    $("energy-detail").textContent = "no energy counter";
  }
  const engines = s.engines || [];
  const tps = engines.reduce((a, e) => a + (e.tokens_per_s || 0), 0);
  $("tps").textContent = fmtNum(tps, 1) + " tok/s";
  $("engine-detail").textContent = engines.map((e) => e.name + ": " + (e.active || 0) + " active, " + (e.tokens_generated || 0) + " tokens").join("; ");
  $("queue").textContent = String(s.queue_depth ?? "-");
  const counts = s.process_counts || {};
  $("queue-detail").textContent = Object.entries(counts).filter(([, n]) => n).map(([k, n]) => k + " " + n).join(", ");
}

// ── processes ──────────────────────────────────────────────────────────────
function procRow(p) {
  const tr = el("tr", { "data-pid": p.pid });
  const nice = el("input", { type: "number", min: "-20", max: "19", value: p.priority, "aria-label": "priority of " + p.pid });
  const live = !["succeeded", "failed", "killed"].includes(p.state);
  const actions = el("td", {},
    el("button", { type: "button", class: "kill", disabled: live ? null : "disabled",
      onclick: () => act(() => api("POST", "/api/v1/processes/" + p.pid + "/kill", { reason: "killed from the dashboard" }), "killed " + p.pid) }, "kill"),
    " ", nice,
    el("button", { type: "button", class: "nice", disabled: live ? null : "disabled",
      onclick: () => act(() => api("POST", "/api/v1/processes/" + p.pid + "/nice", { priority: Number(nice.value) }), "reniced " + p.pid) }, "nice"));
  tr.append(
    el("td", {}, p.pid), el("td", {}, p.kind), el("td", {}, p.owner),
    el("td", { class: "state state-" + p.state, title: p.reason || "" }, p.state),
    el("td", {}, p.priority),
    el("td", {}, (p.tokens_in || 0) + " / " + (p.tokens_out || 0)),
    el("td", {}, fmtNum(p.cpu_s, 2)), el("td", {}, fmtNum(p.wall_s, 2)),
    el("td", {}, p.joules === null || p.joules === undefined ? "-" : fmtJoules(p.joules)),
    actions);
  return tr;
}

function renderProcs() {
  const body = $("proc-rows");
  const showDone = $("show-finished").checked;
  const rows = [...state.procs.values()]
    .filter((p) => showDone || !["succeeded", "failed", "killed"].includes(p.state))
    .sort((a, b) => b.pid - a.pid).slice(0, 200);
  body.replaceChildren(...rows.map(procRow));
}

// ── runs ───────────────────────────────────────────────────────────────────
function stepLine(s) {
  const li = el("li", { class: "step" },
    el("span", { class: "tool" }, s.tool || s.name || "?"), " ",
    s.risk ? el("span", { class: "risk " + s.risk }, s.risk) : null, " ",
    s.status ? el("span", { class: "status " + s.status }, s.status) : null, " ",
    s.reason ? el("span", { class: "reason" }, "— " + s.reason) : null);
  if (s.error) li.append(el("div", { class: "error" }, typeof s.error === "string" ? s.error : (s.error.message || JSON.stringify(s.error))));
  return li;
}

function runCard(r) {
  const card = el("div", { class: "run", "data-run": r.id },
    el("div", { class: "head" },
      el("span", { class: "request" }, r.request || "(request)"),
      el("span", { class: "status " + r.status }, r.status),
      el("span", { class: "muted small" }, r.id)));
  const steps = r.steps && r.steps.length ? r.steps : (r.plan || []);
  if (steps.length) card.append(el("ol", {}, ...steps.map(stepLine)));
  if (r.pending) {
    const p = r.pending;
    card.append(el("div", { class: "pending-step" },
      "Waiting for your yes: ", el("b", {}, p.tool || "step"), " ",
      p.risk ? el("span", { class: "risk " + p.risk }, p.risk) : null, " ",
      p.reason ? el("span", { class: "reason" }, p.reason) : null, " ",
      el("button", { type: "button", class: "confirm",
        onclick: () => act(() => api("POST", "/api/v1/runs/" + r.id + "/confirm", { step: p.step }), "confirmed") }, "confirm"),
      " ",
      el("button", { type: "button", class: "reject",
        onclick: () => act(() => api("POST", "/api/v1/runs/" + r.id + "/reject", { step: p.step, reason: "rejected from the dashboard" }), "rejected") }, "reject")));
  }
  if (r.answer) card.append(el("div", { class: "answer" }, el("b", {}, "Answer: "), r.answer));
  if (r.error) card.append(el("div", { class: "error" }, r.error.message || String(r.error)));
  const ex = r.explanation;
  if (ex) card.append(el("div", { class: "explain" }, Array.isArray(ex) ? ex.join("\n") : (typeof ex === "string" ? ex : JSON.stringify(ex, null, 1))));
  return card;
}

function renderRuns() {
  const list = $("runs-list");
  const runs = [...state.runs.values()].sort((a, b) => (b.created || 0) - (a.created || 0)).slice(0, 20);
  if (!runs.length) { list.replaceChildren(el("p", { class: "muted" }, "no runs yet")); return; }
  list.replaceChildren(...runs.map(runCard));
}

// ── agents ─────────────────────────────────────────────────────────────────
function renderAgents() {
  $("agent-rows").replaceChildren(...state.agents.map((a) => {
    const c = a.capabilities || {};
    const q = c.quotas || {};
    return el("tr", {}, el("td", {}, a.id || a.name),
      el("td", {}, (c.syscalls || []).join(" ")),
      el("td", {}, [...(c.read_roots || []).map((p) => "r " + p), ...(c.write_roots || []).map((p) => "w " + p)].join(", ")),
      el("td", {}, c.network ? "yes" : "no"),
      el("td", {}, Object.entries(q).filter(([, v]) => v !== null).map(([k, v]) => k + "=" + v).join(", ") || "-"));
  }));
}

// ── events ─────────────────────────────────────────────────────────────────
function logEvent(ev) {
  if (ev.type === "system.stats") return;
  const log = $("event-log");
  const t = ev.type || "";
  const text = ev.type + (ev.pid !== undefined ? " pid " + ev.pid : "") + (ev.run_id ? " run " + ev.run_id : "") +
    (ev.state ? " → " + ev.state : "") + (ev.reason ? " (" + ev.reason + ")" : "") +
    (ev.workflow ? " " + ev.workflow + " " + ev.status + " (" + ev.cause + ")" : "") +
    (t === "timer" ? ": " + ev.message : "");
  log.prepend(el("li", {}, text));
  while (log.children.length > 60) log.lastChild.remove();
}

function onEvent(ev) {
  if (ev.id) state.lastEventId = ev.id;
  logEvent(ev);
  const t = ev.type || "";
  if (t === "system.stats") { renderSystem(ev.system); return; }
  if (t === "timer") { toast("⏰ reminder" + (ev.late ? " (late)" : "") + ": " + ev.message); return; }
  if (t.startsWith("run.") && ev.run) {
    state.runs.set(ev.run.id, ev.run);
    renderRuns();
    return;
  }
  if (t === "process" || t.startsWith("proc")) {
    // {type: "process", pid, kind, owner, parent, state, prev, reason}: patch the row now,
    // then refetch (usage figures change too) once the burst is over
    const known = state.procs.get(ev.pid);
    state.procs.set(ev.pid, Object.assign(known || { pid: ev.pid, priority: 0 },
      { kind: ev.kind, owner: ev.owner, parent: ev.parent, state: ev.state, reason: ev.reason }));
    renderProcs();
    scheduleRefresh();
    return;
  }
  if (t.startsWith("agent.")) scheduleRefresh();
}

function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refresh().catch(() => {}); }, 300);
}

async function stream() {
  // Server-sent events over fetch, so the Authorization header can be sent.
  for (;;) {
    try {
      const headers = { "Authorization": "Bearer " + state.token, "Accept": "text/event-stream" };
      if (state.lastEventId) headers["Last-Event-ID"] = String(state.lastEventId);
      const r = await fetch("/api/v1/events", { headers });
      if (r.status === 401) { showLogin("the token was refused"); return; }
      if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
      setConn(true);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
          if (data) { try { onEvent(JSON.parse(data)); } catch (e) { /* not JSON: ignore */ } }
        }
      }
    } catch (e) { /* network error: retry below */ }
    setConn(false);
    await new Promise((res) => setTimeout(res, 2000));
    refresh().catch(() => {});
  }
}

function setConn(on) {
  const c = $("conn");
  c.textContent = on ? "live" : "offline";
  c.className = "pill " + (on ? "on" : "off");
}

// ── actions ────────────────────────────────────────────────────────────────
async function act(fn, done) {
  try {
    await fn();
    toast(done);
    scheduleRefresh();
  } catch (e) {
    toast("error: " + e.message);
  }
}

async function refresh() {
  const [procs, runs, agents, sys] = await Promise.all([
    api("GET", "/api/v1/processes?limit=200"), api("GET", "/api/v1/runs?limit=20"),
    api("GET", "/api/v1/agents"), api("GET", "/api/v1/system")]);
  state.procs = new Map(procs.processes.map((p) => [p.pid, p]));
  state.runs = new Map(runs.runs.map((r) => [r.id, r]));
  state.agents = agents.agents;
  renderProcs(); renderRuns(); renderAgents(); renderSystem(sys);
}

function showLogin(msg) {
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
}

async function start() {
  state.token = loadToken();
  if (!state.token) { showLogin(""); return; }
  try {
    const me = await api("GET", "/api/v1/whoami");
    $("who").textContent = "as " + me.agent + (me.admin ? " (admin)" : "");
  } catch (e) {
    showLogin(e.status === 401 ? "the token was refused" : e.message);
    return;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  await refresh();
  stream();
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem("llmos.token", $("token").value.trim());
  start();
});
$("logout").addEventListener("click", () => { localStorage.removeItem("llmos.token"); location.reload(); });
$("show-finished").addEventListener("change", renderProcs);
start();
