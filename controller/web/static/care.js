// reachlab animal-care page: today's table (as `labctl today`), weight curves with their
// threshold, and weighings and water recorded with the lab's token. Loaded by care.html
// before dashboard.js, which calls carePage(); everything else it uses is dashboard.js's.
"use strict";

const CARE_REFRESH_S = 15;   // records typed elsewhere (labctl) show within this

function fmt(value, digits) {
  if (value === null || value === undefined) return "-";
  return digits === undefined ? String(value) : Number(value).toFixed(digits);
}

function clock(t) {
  if (t === null || t === undefined) return "-";
  return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
}

async function careRecord(kind, mouse, amount) {
  const out = $("care-result");
  const token = $("token").value.trim();
  sessionStorage.setItem("reachlab-token", token);
  const by = $("care-by").value.trim();
  localStorage.setItem("reachlab-care-by", by);
  const body = { mouse, by, ...(kind === "weigh" ? { grams: amount } : { ul: amount }) };
  out.innerHTML = "";
  const send = async () => {
    const response = await fetch(`/api/care/${kind}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    return [response.status, await response.json()];
  };
  let status, data;
  try {
    [status, data] = await send();
    // Over the lab's limit for one entry (labctl water asks the same): the server stores
    // it only when the person confirms it here.
    if (status === 409 && window.confirm(`${data.error}\n\nStore it anyway?`)) {
      body.confirm = true;
      [status, data] = await send();
    }
  } catch (error) {
    out.append(line(`labctl: error: the server did not answer (${error})`, "bad"));
    return false;
  }
  if (data.error) { out.append(line(data.error, "bad")); return false; }
  out.append(line(data.line, "ok"));
  for (const warning of data.warnings) out.append(line(warning, "bad"));
  return true;
}

function careCell(tr, text, need) {
  const td = document.createElement("td");
  td.textContent = text;
  if (need) td.className = "need";
  tr.append(td);
  return td;
}

function careForm(td, mouse, kind, placeholder, reload) {
  const form = document.createElement("form");
  form.className = "inline";
  const input = document.createElement("input");
  Object.assign(input, { type: "number", step: "any", min: "0", placeholder, size: 5 });
  input.setAttribute("aria-label", `${kind} ${mouse}`);
  input.dataset.mouse = mouse;
  input.dataset.kind = kind;
  const button = document.createElement("button");
  button.textContent = kind === "weigh" ? "Weigh" : "Water";
  button.disabled = MODE !== "control";
  if (MODE !== "control") button.title = "this dashboard is read-only";
  form.append(input, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (input.value === "") return;
    if (await careRecord(kind, mouse, Number(input.value))) { input.value = ""; reload(); }
  });
  td.append(form);
}

function carePage() {
  $("care-by").value = localStorage.getItem("reachlab-care-by") || "";
  const curves = new Map();   // mouse -> { el, key }
  const load = async () => {
    let data;
    try {
      data = await getJSON("/api/care");
      $("care-error").hidden = true;
    } catch (error) {
      $("care-error").hidden = false;
      $("care-error").textContent = error.message;
      return;
    }
    $("care-date").textContent = data.date;
    $("care-rules").textContent = `weigh by ${data.settings.alert_weigh_by}, water by ${data.settings.alert_water_by}`;
    const body = document.querySelector("#care tbody");
    body.innerHTML = "";
    for (const r of data.rows) {
      const tr = document.createElement("tr");
      tr.dataset.mouse = r.mouse;
      tr.classList.toggle("action", r.needs.length > 0);
      const first = document.createElement("td");
      const a = document.createElement("a");
      a.href = `/mouse/${encodeURIComponent(r.mouse)}`;
      a.textContent = r.mouse;
      first.append(a);
      tr.append(first);
      careCell(tr, r.box || "-");
      careCell(tr, r.weight_g === null ? (r.restricted ? "not weighed" : "-") : fmt(r.weight_g), r.needs.includes("weigh") || r.needs.includes("weight"));
      careCell(tr, fmt(r.weight_pct, 1), r.needs.includes("weight"));
      careCell(tr, r.threshold_pct === null ? "-" : `${fmt(r.threshold_pct)} %`);
      careCell(tr, clock(r.weighed_at));
      careCell(tr, fmt(r.earned_ul, 0));
      careCell(tr, fmt(r.given_ul));
      careCell(tr, fmt(r.owed_ul, 0), r.needs.includes("water"));
      careCell(tr, [...r.warnings, ...r.overrides.map((o) => `override by ${o}`)].join("; "), r.warnings.length > 0);
      const td = careCell(tr, "");
      careForm(td, r.mouse, "weigh", "g", load);
      careForm(td, r.mouse, "water", "µl", load);
      body.append(tr);
    }
    $("care-empty").hidden = data.rows.length > 0;
    const boxes = $("care-boxes");
    boxes.innerHTML = "";
    for (const warning of data.box_warnings) { const li = document.createElement("li"); li.textContent = warning; boxes.append(li); }
    for (const r of data.rows) {
      let entry = curves.get(r.mouse);
      if (!entry) {
        const el = document.createElement("div");
        el.className = "plot small";
        el.id = `weight-${r.mouse}`;
        $("care-curves").append(el);
        entry = { el, key: null };
        curves.set(r.mouse, entry);
      }
      const key = `${r.weighed_at}|${r.baseline_g}|${r.threshold_pct}`;
      entry.el.hidden = r.weight_g === null && r.weighed_at === null && r.baseline_g === null;
      if (entry.key !== key) {
        entry.key = key;
        getJSON(`/api/weights/${encodeURIComponent(r.mouse)}`).then((w) => weightPlot(entry.el, w)).catch(() => {});
      }
    }
  };
  on("snapshot", load);
  setInterval(load, CARE_REFRESH_S * 1000);
}

window.EXTRA_PAGES = { care: carePage };
