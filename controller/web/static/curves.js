// reachlab dashboard's curves: learning curves against the session number or the date,
// a cohort's 30 mice in distinct colours with a picker instead of a legend, and a mouse's
// weight against its threshold. Loaded before dashboard.js, whose helpers ($, PLOT_CONFIG)
// it uses when called.
"use strict";

// Curves against the session number or the date (a choice kept in this browser).
let X_BY = localStorage.getItem("reachlab-x-by") === "date" ? "date" : "session";
let drawnSeries = null;                 // the last series drawn, for a redraw
const hiddenMice = new Set();           // the cohort's mouse picker
// 30 distinct colours: Plotly's ten, then two more families of ten (30 mice in a cohort).
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#e7ba52", "#637939", "#ad494a", "#7b4173",
  "#3182bd", "#fd8d3c", "#31a354", "#de2d26", "#756bb1", "#636363", "#9c9ede", "#8ca252",
  "#d6616b", "#ce6dbd", "#6baed6", "#fdae6b", "#74c476", "#a55194", "#843c39"];
const colourOf = (i) => PALETTE[i % PALETTE.length];

function axisLayout(title, ytitle, extra) {
  const xaxis = X_BY === "date"
    ? { title: { text: "date" }, type: "date" }
    : { title: { text: "session" }, dtick: 1, rangemode: "tozero" };
  return {
    title: { text: title, font: { size: 14 } },
    margin: { l: 50, r: 20, t: 36, b: 40 },
    height: 250,
    xaxis,
    yaxis: { title: { text: ytitle }, rangemode: "tozero" },
    legend: { orientation: "h", y: -0.25 },
    showlegend: false,
    ...extra,
  };
}

const CURVES = [
  ["plot-correct", "correct %", "%", (p) => p.correct_pct, { yaxis: { title: { text: "%" }, range: [0, 100] } }],
  ["plot-dprime", "d′", "d′", (p) => p.d_prime, {}],
  ["plot-trials", "trials", "trials", (p) => p.trials, {}],
  ["plot-spout", "spout position", "mm", null, { yaxis: { title: { text: "mm" }, range: [0, 7.5] } }],
  ["plot-cue", "cue duration", "ms", (p) => p.cue_duration, {}],
];

function drawCurves(series) {
  // series: [[name, points]]; one trace per name on every plot (the cohort overlays them,
  // each mouse in its own colour; the picker, not a legend, says which is which).
  drawnSeries = series;
  const many = series.length > 1;
  const xs = (points) => points.map((p) => (X_BY === "date" ? p.date : p.index));
  for (const [id, title, ytitle, value, extra] of CURVES) {
    const traces = [];
    series.forEach(([name, points], i) => {
      const x = xs(points);
      const style = many ? { line: { color: colourOf(i) }, marker: { color: colourOf(i), size: 5 }, visible: !hiddenMice.has(name) } : {};
      if (value) {
        traces.push({ x, y: points.map(value), name, mode: "lines+markers", type: "scatter", ...style });
      } else if (many) {
        traces.push({ x, y: points.map((p) => p.spout_left === null || p.spout_right === null ? null : (p.spout_left + p.spout_right) / 2), name, mode: "lines+markers", type: "scatter", ...style });
      } else {
        traces.push({ x, y: points.map((p) => p.spout_left), name: "left", mode: "lines+markers", type: "scatter" });
        traces.push({ x, y: points.map((p) => p.spout_right), name: "right", mode: "lines+markers", type: "scatter" });
      }
    });
    const spoutTitle = id === "plot-spout" && many ? "mean spout position" : title;
    Plotly.react($(id), traces, axisLayout(spoutTitle, ytitle, { showlegend: !many && !value, ...extra }), PLOT_CONFIG);
  }
}

function curveOptions() {
  const pick = $("x-by");
  if (!pick) return;
  pick.value = X_BY;
  pick.addEventListener("change", () => {
    X_BY = pick.value;
    localStorage.setItem("reachlab-x-by", X_BY);
    if (drawnSeries) drawCurves(drawnSeries);
  });
}

function mousePicker(names) {
  const box = $("mouse-picker");
  if (!box) return;
  box.innerHTML = "";
  names.forEach((name, i) => {
    const label = document.createElement("label");
    label.classList.toggle("off", hiddenMice.has(name));
    label.title = `show or hide ${name} in the curves`;
    const check = document.createElement("input");
    Object.assign(check, { type: "checkbox", checked: !hiddenMice.has(name) });
    check.dataset.mouse = name;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colourOf(i);
    check.addEventListener("change", () => {
      if (check.checked) hiddenMice.delete(name); else hiddenMice.add(name);
      label.classList.toggle("off", !check.checked);
      if (drawnSeries) drawCurves(drawnSeries);
    });
    label.append(check, swatch, document.createTextNode(name));
    box.append(label);
  });
}

// A mouse's weighings with the threshold each was held against (the care page too).
function weightPlot(el, data) {
  const times = data.weighings.map((w) => w.at * 1000);
  const x = times.map((t) => new Date(t));
  const one = times.length === 1;   // a lone weighing: a day either side, its threshold a mark
  const xaxis = one ? { type: "date", range: [new Date(times[0] - 864e5), new Date(times[0] + 864e5)] } : { type: "date" };
  Plotly.react(el, [
    { x, y: data.weighings.map((w) => w.grams), name: "weight g", mode: "lines+markers", type: "scatter", line: { color: "#0969da" } },
    { x, y: data.weighings.map((w) => w.threshold_g), name: "threshold g", mode: one ? "markers" : "lines", type: "scatter", marker: { symbol: "line-ew-open", size: 14, color: "#c62828" }, line: { color: "#c62828", dash: "dash", shape: "hv" } },
  ], {
    title: { text: `${data.mouse}: weight`, font: { size: 14 } }, height: 250, showlegend: false,
    margin: { l: 45, r: 15, t: 34, b: 36 }, yaxis: { title: { text: "g" } }, xaxis,
  }, PLOT_CONFIG);
}

