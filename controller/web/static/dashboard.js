// reachlab dashboard: draws the pages from /api and keeps them live from /api/stream.
// Made to stay open all day: one EventSource that is re-opened when it goes quiet, cards
// and plots updated in place (no page reloads, nothing that grows with time).
"use strict";

const PAGE = document.body.dataset.page;
const SUBJECT = document.body.dataset.subject;
const PING_S = 5;            // the server's keep-alive period
const STALE_STREAM_S = 3 * PING_S;
const STALE_STATUS_S = 30;   // three of the agent's 10 s heartbeats
const OUTCOME = { 0: "missed", 1: "correct", 2: "incorrect" };
const PLOT_CONFIG = { displaylogo: false, responsive: true };

let serverOffset = 0;        // server clock minus this browser's clock, s
const now = () => Date.now() / 1000 + serverOffset;
let MODE = "read-only";

function $(id) { return document.getElementById(id); }

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  seconds = Math.max(0, seconds);
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  if (seconds < 48 * 3600) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function pill(el, text, kind) {
  el.textContent = text;
  el.className = "pill" + (kind ? " " + kind : "");
}

// ------------------------------------------------------------------ the live stream

const handlers = {};
function on(kind, fn) { (handlers[kind] = handlers[kind] || []).push(fn); }
function emit(kind, data) { (handlers[kind] || []).forEach((fn) => fn(data)); }

let source = null;
let lastMessage = 0;
// A stream that fails before its first message (the server refused it: 503 when it has
// as many streams open as it allows, or it is away) is tried again after a delay that
// doubles each time, up to a minute, with some jitter so refused pages do not return
// together; the first message resets it.
const RETRY_FIRST_S = 2;
const RETRY_MAX_S = 60;
let failures = 0;
let retryTimer = null;

function openStream() {
  if (retryTimer !== null) { clearTimeout(retryTimer); retryTimer = null; }
  if (source) source.close();
  source = new EventSource("/api/stream");
  lastMessage = Date.now() / 1000;
  let heard = false;
  for (const kind of ["snapshot", "box", "trial", "broker", "ping"]) {
    source.addEventListener(kind, (event) => {
      heard = true;
      failures = 0;
      lastMessage = Date.now() / 1000;
      pill($("live"), "live", "ok");
      const data = JSON.parse(event.data);
      if (data.server_time) serverOffset = data.server_time - Date.now() / 1000;
      if (data.broker) showBroker(data.broker);
      if (kind === "broker") showBroker(data);
      emit(kind, data);
    });
  }
  const mine = source;
  source.onerror = () => {
    if (mine !== source || mine.readyState !== EventSource.CLOSED) {
      pill($("live"), "reconnecting…", "warn");  // the browser retries by itself
      return;
    }
    if (!heard) failures += 1;
    // Refused at first try: the page is drawn once from the plain JSON meanwhile.
    if (failures === 1) {
      getJSON("/api/rigs").then((data) => { showBroker(data.broker); emit("snapshot", data); }, () => {});
    }
    const delay = Math.min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** Math.max(0, failures - 1));
    const wait = delay * (0.75 + Math.random() / 2);
    pill($("live"), `no live stream: retrying in ${Math.round(wait)} s`, "warn");
    retryTimer = setTimeout(openStream, wait * 1000);
  };
}

// A stream that says nothing for three pings is dead even if the socket is not; one
// waiting for its retry is left to it.
setInterval(() => {
  if (retryTimer === null && Date.now() / 1000 - lastMessage > STALE_STREAM_S) {
    pill($("live"), `no data for ${age(Date.now() / 1000 - lastMessage)}: reconnecting`, "bad");
    openStream();
  }
}, 2000);

function showBroker(broker) {
  if (broker.connected) pill($("broker"), "broker ok", "ok");
  else pill($("broker"), "broker unreachable", "bad");
  $("broker").title = broker.note || broker.url;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// ------------------------------------------------------------------ mode and control

async function loadInfo() {
  const info = await getJSON("/api/info");
  MODE = info.mode;
  serverOffset = info.server_time - Date.now() / 1000;
  $("database").textContent = `database ${info.database}`;
  showBroker(info.broker);
  if (MODE === "control") {
    pill($("mode"), "control: token needed to start/stop", "warn");
    $("token-box").hidden = false;
    $("token").value = sessionStorage.getItem("reachlab-token") || "";
    $("token").addEventListener("change", () => sessionStorage.setItem("reachlab-token", $("token").value));
  } else {
    pill($("mode"), "read-only", "");
    $("mode").title = "start labctl web with --token-file or LABCTL_WEB_TOKEN to allow control";
  }
  document.querySelectorAll("button[data-action]").forEach((button) => {
    button.disabled = MODE !== "control";
    if (MODE !== "control") button.title = "this dashboard is read-only";
  });
}

async function control(action, target) {
  const out = $("control-result");
  out.textContent = `${action}…`;
  const body = { ...target };
  const duration = $("duration") && $("duration").value;
  if (action === "start" && duration) body.duration = Number(duration);
  const token = $("token").value.trim();
  sessionStorage.setItem("reachlab-token", token);
  let response, data;
  try {
    response = await fetch(`/api/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    data = await response.json();
  } catch (error) {
    out.innerHTML = "";
    out.append(line(`labctl: error: the server did not answer (${error})`, "bad"));
    return;
  }
  out.innerHTML = "";
  if (data.error) {
    out.append(line(data.error, "bad"));
    return;
  }
  for (const warning of data.warnings || []) out.append(line(warning, "bad"));
  for (const o of data.outcomes) {
    const verb = action === "start" ? "started" : "stopped";
    const text = `${o.mouse || "-"}  box ${o.box || "-"}  ${o.ok ? verb : "not " + verb}` +
      `${o.session_id ? "  " + o.session_id : ""}${o.reason ? "  (" + o.reason + ")" : ""}`;
    out.append(line(text, o.ok ? "ok" : "bad"));
  }
  out.append(line(data.summary, data.ok ? "ok" : "bad"));
}

function line(text, kind) {
  const div = document.createElement("div");
  div.className = kind;
  div.textContent = text;
  return div;
}

// ------------------------------------------------------------------ rigs page

const cards = new Map();   // box -> { el, data }

function cardElement(box) {
  const el = document.createElement("article");
  el.className = "card";
  el.dataset.box = box;
  el.innerHTML = `<h3><span>Box <span data-f="box"></span></span><span class="when" data-f="online"></span></h3>
    <dl><dt>state</dt><dd data-f="state"></dd><dt>mouse</dt><dd data-f="mouse"></dd>
    <dt>trial</dt><dd data-f="trial"></dd><dt>correct</dt><dd data-f="correct"></dd>
    <dt>rewards</dt><dd data-f="rewards"></dd><dt>session</dt><dd data-f="ended"></dd>
    <dt>last event</dt><dd data-f="event"></dd>
    <dt>clock skew</dt><dd data-f="skew"></dd></dl>
    <div class="progress"><div></div></div><p class="note" data-f="note"></p>`;
  return el;
}

function field(el, name) { return el.querySelector(`[data-f="${name}"]`); }
function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

function renderCard(card) {
  let entry = cards.get(card.box);
  if (!entry) {
    entry = { el: cardElement(card.box), data: card };
    cards.set(card.box, entry);
    placeCard(entry.el, card.box);
  }
  entry.data = card;
  const el = entry.el;
  const running = card.online && (card.state === "running" || card.state === "stopping");
  setText(field(el, "box"), card.box);
  setText(field(el, "state"), card.state);
  // A box whose session ended keeps it on the card until the next one starts.
  const last = running ? null : card.last_session;
  const mouse = field(el, "mouse");
  const who = card.mouse || (last && last.mouse) || card.assigned;
  if (who) {
    const label = card.mouse ? who : last && last.mouse ? `${who} (${last.status || "ended"})` : `(${who})`;
    if (!mouse.firstChild || mouse.firstChild.textContent !== label) {
      mouse.innerHTML = "";
      const a = document.createElement("a");
      a.href = `/mouse/${encodeURIComponent(who)}`;
      a.textContent = label;
      mouse.append(a);
    }
  } else setText(mouse, "-");
  setText(field(el, "trial"), running ? String(card.trial) : last ? String(last.trials) : "-");
  const pct = running ? card.correct_pct : last ? last.correct_pct : null;
  setText(field(el, "correct"), pct === null || pct === undefined ? "-"
    : running ? `${pct.toFixed(0)} % (${card.correct}/${card.judged})` : `${pct.toFixed(0)} %`);
  setText(field(el, "rewards"), running ? String(card.rewards) : last ? String(last.rewards) : "-");
  el.classList.toggle("ended", Boolean(last));
  setText(field(el, "skew"), card.skew === null ? "-" : `${card.skew >= 0 ? "+" : ""}${card.skew.toFixed(2)} s`);
  el.querySelector(".progress > div").style.width = card.progress === null ? "0" : `${(100 * card.progress).toFixed(1)}%`;
  el.classList.toggle("online", card.online);
  el.classList.toggle("running", running);
  tickCard(entry);
}

function placeCard(el, box) {
  const container = $("cards");
  const key = (b) => (/^\d+$/.test(b) ? [0, Number(b), ""] : [1, 0, b]);
  const mine = key(box);
  for (const other of container.children) {
    const theirs = key(other.dataset.box);
    if (mine[0] < theirs[0] || (mine[0] === theirs[0] && (mine[1] < theirs[1] || (mine[1] === theirs[1] && mine[2] < theirs[2])))) {
      container.insertBefore(el, other);
      return;
    }
  }
  container.append(el);
}

// Ages move on their own: redrawn every second from the timestamps the server sent.
function tickCard(entry) {
  const card = entry.data, el = entry.el, t = now();
  const since = card.since === null ? "" : `${card.since_exact ? "" : "≥ "}${age(t - card.since)}`;
  setText(field(el, "online"), `${card.online ? "online" : "offline"}${since ? " " + since : ""}`);
  setText(field(el, "event"), card.event_at === null ? "-" : `${age(t - card.event_at)} ago`);
  const running = card.online && (card.state === "running" || card.state === "stopping");
  const last = running ? null : card.last_session;
  setText(field(el, "ended"), running ? "running" : last
    ? `${last.status || "ended"}${last.ended_at ? " " + age(t - last.ended_at) + " ago" : ""}` : "-");
  const silent = card.status_at === null ? null : t - card.status_at;
  const stale = card.online && silent !== null && silent > STALE_STATUS_S;
  el.classList.toggle("stale", stale);
  setText(field(el, "note"), stale ? `no status for ${age(silent)}` : card.note || "");
}

function rigsPage() {
  const count = () => {
    const online = [...cards.values()].filter((c) => c.data.online).length;
    $("rig-count").textContent = `${online} of ${cards.size} online`;
    $("no-rigs").hidden = cards.size > 0;
  };
  on("snapshot", (data) => {
    const seen = new Set(data.boxes.map((c) => c.box));
    for (const [box, entry] of cards) if (!seen.has(box)) { entry.el.remove(); cards.delete(box); }
    data.boxes.forEach(renderCard);
    count();
  });
  on("box", (card) => { renderCard(card); count(); });
  setInterval(() => cards.forEach(tickCard), 1000);
}

// ------------------------------------------------------------------ plots: curves.js

// ------------------------------------------------------------------ mouse page

function mousePage() {
  $("mouse-id").textContent = SUBJECT;
  document.title = `reachlab · ${SUBJECT}`;
  let current = null;   // { box, session_id, trials: [[n, outcome]] }
  let box = null;
  let redraw = null;

  const drawCurrent = () => {
    redraw = null;
    const trials = current ? current.trials : [];
    let correct = 0;
    const running = trials.map(([n, o], i) => { correct += o === 1; return (100 * correct) / (i + 1); });
    const color = { 0: "#8c959f", 1: "#1a7f37", 2: "#c62828" };
    Plotly.react($("plot-current"), [
      { x: trials.map(([n]) => n + 1), y: trials.map(([, o]) => OUTCOME[o]), mode: "markers", type: "scatter", name: "outcome", marker: { color: trials.map(([, o]) => color[o]), size: 7 } },
      { x: trials.map(([n]) => n + 1), y: running, mode: "lines", type: "scatter", name: "correct % so far", yaxis: "y2", line: { color: "#0969da" } },
    ], {
      margin: { l: 80, r: 50, t: 10, b: 40 }, height: 220, showlegend: false,
      xaxis: { title: { text: "trial" }, rangemode: "tozero" },
      yaxis: { type: "category", categoryorder: "array", categoryarray: ["missed", "incorrect", "correct"] },
      yaxis2: { overlaying: "y", side: "right", autorange: false, range: [0, 100], tickvals: [0, 50, 100], title: { text: "correct %" } },
    }, PLOT_CONFIG);
    $("current-what").textContent = current
      ? `box ${current.box}, session ${current.session_id}: ${trials.length} trials, ${correct} correct`
      : "no session running";
  };
  const scheduleCurrent = () => { if (!redraw) redraw = setTimeout(drawCurrent, 200); };

  const load = async () => {
    try {
      const data = await getJSON(`/api/mouse/${encodeURIComponent(SUBJECT)}`);
      $("mouse-error").hidden = true;
      box = data.box;
      $("mouse-where").textContent = `box ${data.box || "-"} · cohorts ${data.cohorts.join(", ") || "-"}`;
      $("session-count").textContent = `${data.sessions.length} stored session(s)`;
      drawCurves([[SUBJECT, data.sessions]]);
      getJSON(`/api/weights/${encodeURIComponent(SUBJECT)}`).then((w) => {
        const none = w.weighings.length === 0;
        $("weight-count").textContent = none ? "no weighings in the last 90 days"
          : `${w.weighings.length} weighing(s), last 90 days`;
        $("plot-weight").hidden = none;
        if (!none) weightPlot($("plot-weight"), w);
      }).catch(() => {});
      current = data.current;
      drawCurrent();
    } catch (error) {
      $("mouse-error").hidden = false;
      $("mouse-error").textContent = error.message;
    }
  };
  on("trial", (t) => {
    if (!current || t.session_id !== current.session_id) {
      if (t.mouse !== SUBJECT && t.box !== (current ? current.box : box)) return;
      if (t.mouse !== SUBJECT && !current) return;
      current = { box: t.box, session_id: t.session_id, trials: [] };
    }
    if (!current.trials.some(([n]) => n === t.trial)) {
      current.trials.push([t.trial, t.outcome]);
      current.trials.sort((a, b) => a[0] - b[0]);
    }
    scheduleCurrent();
  });
  let wasRunning = null;
  on("box", (card) => {
    if (card.mouse !== SUBJECT && card.box !== box) return;
    const running = card.online && card.state === "running" && card.mouse === SUBJECT;
    if (running && (!current || current.session_id !== card.session_id)) {
      current = { box: card.box, session_id: card.session_id, trials: [] };
      scheduleCurrent();
    }
    // A session just ended: its row is stored once the collector has it all.
    if (wasRunning && !running) [2000, 8000].forEach((ms) => setTimeout(load, ms));
    wasRunning = running;
  });
  on("snapshot", load);   // also after a reconnect: nothing missed while away
  document.querySelectorAll("button[data-action]").forEach((button) =>
    button.addEventListener("click", () => control(button.dataset.action, { mice: [SUBJECT] })));
}

// ------------------------------------------------------------------ cohort page

function cohortPage() {
  const pick = $("cohort-pick");
  const load = async () => {
    try {
      const data = await getJSON(`/api/cohort${SUBJECT ? "?name=" + encodeURIComponent(SUBJECT) : ""}`);
      $("cohort-error").hidden = true;
      if (pick.options.length === 1) {
        for (const name of data.cohorts) pick.append(new Option(name, name, false, name === SUBJECT));
      }
      // labctl results' columns for the latest session, after the mouse: box and sessions
      // before them, correct % after.
      const head = document.querySelector("#results thead tr");
      head.innerHTML = "";
      const names = ["mouse", "box", "sessions", ...data.columns.slice(1), "correct %"];
      for (const name of names) { const th = document.createElement("th"); th.textContent = name; head.append(th); }
      const body = document.querySelector("#results tbody");
      body.innerHTML = "";
      for (const row of data.rows) {
        const cells = row.cells ? row.cells.slice(1) : data.columns.slice(1).map(() => "-");
        const values = [row.box || "-", row.sessions, ...cells,
          row.correct_pct === null ? "-" : row.correct_pct.toFixed(1)];
        const tr = document.createElement("tr");
        const first = document.createElement("td");
        const a = document.createElement("a");
        a.href = `/mouse/${encodeURIComponent(row.mouse)}`;
        a.textContent = row.mouse;
        first.append(a);
        tr.append(first);
        for (const cell of values) { const td = document.createElement("td"); td.textContent = String(cell); tr.append(td); }
        body.append(tr);
      }
      const series = Object.entries(data.curves);
      mousePicker(series.map(([name]) => name));
      drawCurves(series);
    } catch (error) {
      $("cohort-error").hidden = false;
      $("cohort-error").textContent = error.message;
    }
  };
  const every = (hide) => {
    if (!drawnSeries) return;
    for (const [name] of drawnSeries) { if (hide) hiddenMice.add(name); else hiddenMice.delete(name); }
    mousePicker(drawnSeries.map(([name]) => name));
    drawCurves(drawnSeries);
  };
  $("pick-all").addEventListener("click", () => every(false));
  $("pick-none").addEventListener("click", () => every(true));
  pick.addEventListener("change", () => { location.href = pick.value ? `/cohort?name=${encodeURIComponent(pick.value)}` : "/cohort"; });
  $("cohort-controls").hidden = !SUBJECT;
  document.querySelectorAll("button[data-action]").forEach((button) =>
    button.addEventListener("click", () => control(button.dataset.action, { cohort: SUBJECT })));
  const running = new Map();
  on("box", (card) => {
    const now = card.online && card.state === "running";
    if (running.get(card.box) && !now) [2000, 8000].forEach((ms) => setTimeout(load, ms));
    running.set(card.box, now);
  });
  on("snapshot", load);
}

// ------------------------------------------------------------------ start

document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("here", a.dataset.nav === PAGE));
$("mouse-go").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = $("mouse-go-id").value.trim();
  if (id) location.href = `/mouse/${encodeURIComponent(id)}`;
});
curveOptions();
({ rigs: rigsPage, mouse: mousePage, cohort: cohortPage, ...(window.EXTRA_PAGES || {}) })[PAGE]();
loadInfo().catch((error) => pill($("mode"), `server: ${error.message}`, "bad")).finally(openStream);
