// The search page of `python -m wat_jax.tools.app`: plain JavaScript, no library, no
// network beyond this server's /api/*. Every text from the run goes in through
// textContent, never as HTML.
"use strict";

const SIDE_COLOURS = { left: "#1f77b4", right: "#d62728", centre: "#222222" };
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"];
const state = { info: null, animated: [], selectedRow: null, classColour: {} };

function $(id) { return document.getElementById(id); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function say(text, isError) {
  const message = $("message");
  message.textContent = text || "";
  message.className = isError ? "error" : "";
}

// One call to the server; resolves to its JSON, or rejects with its one-line error.
async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new Error("the server does not answer (is python -m wat_jax.tools.app still running?)");
  }
  let data = null;
  try { data = await response.json(); } catch (e) { /* a non-JSON answer */ }
  if (!response.ok) {
    throw new Error((data && data.error) || `${response.status} ${response.statusText}`);
  }
  return data;
}

function fmtTime(seconds) {
  return typeof seconds === "number" ? `${seconds.toFixed(1)} s` : "-";
}

// ---- skeletons ---------------------------------------------------------------------------

// The drawing follows the body: each frame is centred on its joints' mean x, so a
// window that runs or walks several metres keeps a large figure; ticks on the ground
// line slide past instead, showing the travel. The scale fits the largest frame.
function layout(skel) {
  let lowY = Infinity, highY = -Infinity, halfWidth = 1e-3;
  const centres = skel.points.map((frame, t) => {
    const xs = frame.filter((_, j) => skel.visible[t][j]).map((p) => p[0]);
    const centre = xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
    frame.forEach((p, j) => {
      if (!skel.visible[t][j]) return;
      lowY = Math.min(lowY, p[1]);
      highY = Math.max(highY, p[1]);
      halfWidth = Math.max(halfWidth, Math.abs(p[0] - centre));
    });
    return centre;
  });
  if (!isFinite(lowY)) { lowY = 0; highY = 1; }
  return { centres, lowY, highY, span: Math.max(2 * halfWidth, highY - lowY, 1e-3) };
}

function drawFrame(canvas, skel, t) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, margin = 10;
  const box = skel._layout || (skel._layout = layout(skel));
  const scale = (Math.min(w, h) - 2 * margin) / box.span;
  const cx = box.centres[t], cy = (box.lowY + box.highY) / 2;
  const at = (p) => [w / 2 + (p[0] - cx) * scale, h / 2 - (p[1] - cy) * scale]; // y up
  ctx.clearRect(0, 0, w, h);
  const ground = at([0, box.lowY])[1];
  ctx.strokeStyle = "#d0d0d0";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(0, ground);
  ctx.lineTo(w, ground);
  const tick = box.span / 4;  // ground ticks every quarter of the figure's size
  for (let x = Math.floor((cx - box.span) / tick) * tick; x <= cx + box.span; x += tick) {
    const sx = at([x, 0])[0];
    ctx.moveTo(sx, ground);
    ctx.lineTo(sx - 5, ground + 5);
  }
  ctx.stroke();
  const frame = skel.points[t], visible = skel.visible[t];
  ctx.lineWidth = 2.5;
  for (const [a, b] of skel.bones) {
    if (!visible[a] || !visible[b]) continue;
    ctx.strokeStyle = SIDE_COLOURS[skel.sides[b]] || "#222";
    const [x0, y0] = at(frame[a]), [x1, y1] = at(frame[b]);
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
  }
  frame.forEach((p, j) => {
    if (!visible[j]) return;
    const [x, y] = at(p);
    ctx.fillStyle = SIDE_COLOURS[skel.sides[j]] || "#222";
    ctx.beginPath(); ctx.arc(x, y, 2.5, 0, 2 * Math.PI); ctx.fill();
  });
  canvas.dataset.drawn = "1";
}

function animate(canvas, skel) {
  state.animated = state.animated.filter((a) => a.canvas !== canvas && a.canvas.isConnected);
  state.animated.push({ canvas, skel, start: performance.now() });
  drawFrame(canvas, skel, 0);
}

function tick(now) {
  requestAnimationFrame(tick);  // first: a failing drawing must not stop the others
  for (const a of state.animated) {
    const frames = a.skel.points.length;
    // rAF's `now` is when the frame began, which can precede `start`
    const t = Math.floor((Math.max(0, now - a.start) / 1000) * a.skel.fps) % frames;
    if (frames > 1 && t !== a.shown) {
      a.shown = t;
      drawFrame(a.canvas, a.skel, t);
    }
  }
}

async function showSkeleton(canvas, row) {
  try {
    animate(canvas, await api(`/api/skeleton?row=${encodeURIComponent(row)}`));
  } catch (e) {
    canvas.title = e.message;
  }
}

// ---- search ------------------------------------------------------------------------------

async function search(query) {
  const k = Number($("k").value);
  say("searching…");
  $("go").disabled = true;
  try {
    const answer = await api("/api/search", { query, k });
    renderHits(answer);
    say(`${answer.hits.length} of ${answer.num_windows} ${state.info.split} windows, ` +
        `step ${answer.step}`);
    if (answer.hits.length && state.info.timeline) {
      $("sequence").value = answer.hits[0].source;
    }
  } catch (e) {
    say(e.message, true);
  } finally {
    $("go").disabled = false;
  }
}

function renderHits(answer) {
  const hits = $("hits");
  hits.replaceChildren();
  state.animated = [];
  for (const hit of answer.hits) {
    const canvas = el("canvas", { width: 180, height: 180, className: "skeleton" });
    const card = el("div", { className: "hit" },
      canvas,
      el("div", {}, el("span", { className: "rank" }, `#${hit.rank}`),
        el("span", { className: "score" }, hit.score.toFixed(4))),
      el("div", { className: "source" }, `${hit.source} @ ${fmtTime(hit.start_s)}`),
      el("div", { className: "labels" }, hit.labels.length ? hit.labels.join(", ") : "-"));
    Object.assign(card.dataset, { row: hit.row, rank: hit.rank, score: hit.score });
    card.addEventListener("click", () => showTexts(hit.row));
    hits.append(card);
    showSkeleton(canvas, hit.row);
  }
}

// ---- motion to texts ---------------------------------------------------------------------

async function showTexts(row) {
  state.selectedRow = row;
  for (const card of document.querySelectorAll(".hit")) {
    card.classList.toggle("selected", Number(card.dataset.row) === Number(row));
  }
  $("row").value = row;
  try {
    const answer = await api(`/api/texts?row=${encodeURIComponent(row)}&k=5`);
    $("motion-info").replaceChildren(
      el("div", {}, `window ${answer.row}: ${answer.source} @ ${fmtTime(answer.start_s)}`),
      el("div", { className: "labels" }, `labels: ${answer.labels.join(", ") || "-"}`));
    const body = $("texts").tBodies[0];
    body.replaceChildren(...answer.texts.map((t) => {
      const tr = el("tr", { className: answer.labels.includes(t.key) ? "true" : "" },
        el("td", {}, t.rank), el("td", {}, t.phrase),
        el("td", { className: "num" }, t.score.toFixed(4)));
      return tr;
    }));
    showSkeleton($("motion-canvas"), answer.row);
    $("motion-hint").hidden = true;
  } catch (e) {
    say(e.message, true);
  }
}

// ---- timeline ----------------------------------------------------------------------------

// Colours go to the classes one timeline shows, in order of appearance: BABEL has 60
// classes and the palette 15, so colouring by class index would repeat within a picture.
function colourOf(name) {
  if (!(name in state.classColour)) {
    state.classColour[name] = PALETTE[Object.keys(state.classColour).length % PALETTE.length];
  }
  return state.classColour[name];
}

function drawLane(ctx, segments, y, height, x) {
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "middle";
  for (const s of segments) {
    const x0 = x(s.start_s), x1 = x(s.end_s);
    ctx.globalAlpha = 0.85;
    ctx.fillStyle = colourOf(s.class);
    ctx.fillRect(x0, y, Math.max(x1 - x0, 1), height);
    ctx.globalAlpha = 1;
    const label = s.class;
    if (x1 - x0 > ctx.measureText(label).width + 6) {
      ctx.fillStyle = "#ffffff";
      ctx.fillText(label, x0 + 3, y + height / 2);
    }
  }
}

function drawTimeline(answer) {
  const canvas = $("timeline-canvas");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 110, right = 15;
  const duration = answer.duration_s || 1;
  state.classColour = {};
  const x = (s) => left + (s / duration) * (w - left - right);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#222";
  ctx.font = "12px sans-serif";
  ctx.textBaseline = "middle";
  ctx.fillText("predicted", 8, 30);
  drawLane(ctx, answer.segments, 15, 30, x);
  if (answer.ground_truth) {
    ctx.fillStyle = "#222";
    ctx.fillText("BABEL labels", 8, 75);
    drawLane(ctx, answer.ground_truth.segments, 60, 30, x);
  }
  const top = 110, bottom = h - 30;
  if (answer.query) {
    const q = answer.query, times = answer.frames.time_s, curve = q.curve;
    const lo = Math.min(...curve), hi = Math.max(...curve), span = Math.max(hi - lo, 1e-6);
    const y = (v) => bottom - ((v - lo) / span) * (bottom - top);
    ctx.fillStyle = "rgba(255, 200, 0, 0.25)";
    for (const i of q.intervals) ctx.fillRect(x(i.start_s), top, x(i.end_s) - x(i.start_s), bottom - top);
    ctx.strokeStyle = "#333";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    times.forEach((t, i) => (i ? ctx.lineTo(x(t), y(curve[i])) : ctx.moveTo(x(t), y(curve[i]))));
    ctx.stroke();
    ctx.fillStyle = "#222";
    ctx.fillText("query", 8, (top + bottom) / 2);
  } else {
    ctx.fillStyle = "#888";
    ctx.fillText("type a query to see where in time it matches", left, (top + bottom) / 2);
  }
  ctx.strokeStyle = "#999";  // the time axis, a tick every whole second or so
  ctx.beginPath(); ctx.moveTo(left, bottom + 2); ctx.lineTo(w - right, bottom + 2); ctx.stroke();
  const step = Math.max(1, Math.round(duration / 12));
  ctx.fillStyle = "#444";
  ctx.textBaseline = "top";
  for (let s = 0; s <= duration + 1e-9; s += step) ctx.fillText(`${s}s`, x(s) - 6, bottom + 6);
  canvas.dataset.drawn = "1";
  const seen = [...new Set([...answer.segments, ...((answer.ground_truth || {}).segments || [])]
    .map((s) => s.class))];
  $("timeline-legend").replaceChildren(...seen.map((c) => {
    const swatch = el("i", {});
    swatch.style.background = colourOf(c);
    return el("span", {}, swatch, c);
  }));
  const q = answer.query;
  const notFound = q && q.found === false && q.not_found_threshold != null
    ? [el("li", {class: "not-found"}, `not found: the best score, ${q.peak_score.toFixed(4)} ` +
      `at ${q.peak_s.toFixed(2)} s, is below the run's not-found threshold ` +
      `${q.not_found_threshold.toFixed(4)}`)]
    : [];
  $("intervals").replaceChildren(...notFound, ...(q ? q.intervals.slice(0, 10) : [])
    .map((i) => el("li", {}, `${i.start_s.toFixed(2)} - ${i.end_s.toFixed(2)} s, ` +
      `peak ${i.peak_s.toFixed(2)} s, score ${i.score.toFixed(4)}`)));
}

async function showTimeline() {
  const source = $("sequence").value;
  const query = $("query").value.trim();
  say("computing the timeline…");
  try {
    const answer = await api("/api/timeline", { source, query: query || null });
    drawTimeline(answer);
    say(`timeline of ${answer.sequence} (${answer.duration_s.toFixed(1)} s, ` +
        `${answer.num_windows} windows, step ${answer.step})`);
  } catch (e) {
    say(e.message, true);
  }
}

// ---- start -------------------------------------------------------------------------------

async function start() {
  try {
    state.info = await api("/api/info");
  } catch (e) {
    say(e.message, true);
    return;
  }
  const info = state.info;
  $("run").textContent = `${info.workdir}: ${info.task}, step ${info.step}, ` +
    `${info.num_windows} ${info.split} windows`;
  $("row").max = info.num_windows - 1;
  $("examples").replaceChildren(el("span", { className: "muted" }, "try:"),
    ...info.examples.map((q) => {
      const button = el("button", { type: "button", className: "example" }, q);
      button.addEventListener("click", () => { $("query").value = q; search(q); });
      return button;
    }));
  if (info.timeline) {
    $("timeline-panel").hidden = false;
    $("sequence").replaceChildren(...info.sequences.map((s) =>
      el("option", { value: s.source }, s.sid ? `${s.sid}: ${s.source}` : s.source)));
  }
  document.body.dataset.ready = "1";
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  search($("query").value);
});
$("row-form").addEventListener("submit", (event) => {
  event.preventDefault();
  showTexts($("row").value);
});
$("timeline-form").addEventListener("submit", (event) => {
  event.preventDefault();
  showTimeline();
});
requestAnimationFrame(tick);
start();
