// fchm dashboard: polls the decode server's JSON API and shows one card per
// device. No framework: a card is built once (buildCard) and then updated in
// place (updateCard), so inputs keep their values and focus between polls.
"use strict";

const POLL_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const RATE_MODES = ["auto", "gain", "kbps"];
// Plots' SVG user units (stretched to the card's width).
const PLOT_W = 300;
const PLOT_H = 70;
// A setting the device has not reported back within this long was refused.
const CONFIRM_MS = 10000;

const devicesEl = document.getElementById("devices");
const emptyEl = document.getElementById("empty");
const updatedEl = document.getElementById("updated");
const pollErrorEl = document.getElementById("poll-error");

/** device id -> card (see buildCard) */
const cards = new Map();

// ---------------------------------------------------------------- helpers

/** An HTML element with attributes (class, data-*, ...) and children. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

/** An SVG element with attributes. */
function s(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

function deviceUrl(id, rest = "") {
  return `/api/devices/${encodeURIComponent(id)}${rest}`;
}

function fmt(x, digits = 0) {
  return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–";
}

/** A measurement: one decimal below 10, none above. */
function fmtValue(x) {
  return fmt(x, Math.abs(x) < 10 ? 1 : 0);
}

/** A stable colour per class name. */
function classColour(name) {
  let hash = 0;
  for (const c of String(name)) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 90% 55%)`;
}

// ---------------------------------------------------------------- polling

let pollTimer = null;
let polling = false;

function schedulePoll(ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, ms);
}

async function poll() {
  if (polling) return;
  polling = true;
  try {
    const devices = await getJson("/api/devices");
    if (!Array.isArray(devices)) throw new Error("/api/devices: not a list");
    syncCards(devices);
    await Promise.all(devices.map((d) => refreshDetail(cards.get(d.id))));
    updatedEl.textContent = new Date().toLocaleTimeString();
    updatedEl.dateTime = new Date().toISOString();
    pollErrorEl.hidden = true;
  } catch (e) {
    pollErrorEl.textContent = `poll failed: ${e.message}`;
    pollErrorEl.hidden = false;
  } finally {
    polling = false;
    schedulePoll(POLL_MS);
  }
}

/** Create, update and remove cards to match the device list. */
function syncCards(devices) {
  const seen = new Set();
  for (const d of devices) {
    seen.add(d.id);
    let card = cards.get(d.id);
    if (!card) {
      card = buildCard(d.id);
      cards.set(d.id, card);
      devicesEl.append(card.el);
    }
    updateCard(card, d);
  }
  for (const [id, card] of cards) {
    if (!seen.has(id)) {
      if (card.objectUrl) URL.revokeObjectURL(card.objectUrl);
      card.el.remove();
      cards.delete(id);
    }
  }
  emptyEl.hidden = devices.length > 0;
}

/** Fetch /api/devices/{id}: latest frame, stats and rate history. */
async function refreshDetail(card) {
  try {
    const detail = await getJson(deviceUrl(card.id));
    card.detailError.textContent = "";
    updateDetail(card, detail);
  } catch (e) {
    card.detailError.textContent = e.message;
  }
}

// ---------------------------------------------------------------- card

function buildCard(id) {
  const el = h("section", { class: "device", "data-device": id });
  const q = (sel) => el.querySelector(sel);
  el.innerHTML = `
    <header class="card-head">
      <h2 class="device-id"></h2>
      <span class="status unknown">unknown</span>
      <span class="model"></span>
    </header>
    <div class="picture">
      <img class="latest" alt="latest picture" hidden>
      <div class="placeholder">no picture yet</div>
      <svg class="boxes" xmlns="${SVG_NS}" preserveAspectRatio="none"></svg>
      <span class="view-label"></span>
    </div>
    <dl class="frame-info">
      <div><dt>sequence</dt><dd class="seq">–</dd></div>
      <div><dt>decode</dt><dd class="decode-ms">–</dd></div>
      <div><dt>detections</dt><dd class="detections-count">–</dd></div>
      <div><dt>frames</dt><dd class="frames">–</dd></div>
      <div><dt>bytes</dt><dd class="bytes">–</dd></div>
    </dl>
    <p class="device-stats"></p>
    <div class="plots">${["bitrate", "gain", "rtt"].map((name) => `
      <figure class="plot plot-${name}">
        <figcaption></figcaption>
        <svg viewBox="0 0 ${PLOT_W} ${PLOT_H}" preserveAspectRatio="none"></svg>
      </figure>`).join("")}
    </div>
    <div class="controls">
      <form class="control" data-key="rate_mode" novalidate>
        <label>rate mode <select class="rate-mode"></select></label>
        <button type="submit" class="apply-rate-mode">Apply</button>
        <span class="reported">reported <span class="state-rate_mode">–</span></span>
      </form>
      <form class="control" data-key="target_kbps" novalidate>
        <label>target kbit/s
          <input class="target-kbps" type="number" min="1" step="any" inputmode="decimal"></label>
        <button type="submit" class="apply-target-kbps">Apply</button>
        <span class="reported">reported <span class="state-target_kbps">–</span></span>
      </form>
      <form class="control" data-key="gain" novalidate>
        <label>gain
          <input class="gain" type="number" min="0" step="any" inputmode="decimal"></label>
        <button type="submit" class="apply-gain">Apply</button>
        <span class="reported">reported <span class="state-gain">–</span></span>
      </form>
      <form class="control look" novalidate>
        <button type="submit" class="look-now">Look now</button>
        <label>view <select class="human-mode">
          <option value="fast">fast</option><option value="diffusion">diffusion</option></select></label>
        <span class="reported">aux <span class="state-aux">–</span></span>
      </form>
      <p class="sent"></p>
      <p class="error" role="alert"></p>
      <p class="detail-error"></p>
    </div>
    <figure class="human" hidden>
      <img class="human-view" alt="human view">
      <figcaption class="human-caption"></figcaption>
    </figure>`;
  q(".device-id").textContent = id;
  for (const m of RATE_MODES) q("select.rate-mode").append(h("option", { value: m }, m));

  const card = {
    id,
    el,
    status: q(".status"),
    model: q(".model"),
    img: q("img.latest"),
    placeholder: q(".placeholder"),
    picture: q(".picture"),
    boxes: q(".boxes"),
    viewLabel: q(".view-label"),
    seq: q(".seq"),
    decodeMs: q(".decode-ms"),
    detectionsCount: q(".detections-count"),
    frames: q(".frames"),
    bytes: q(".bytes"),
    deviceStats: q(".device-stats"),
    plots: {
      bitrate: q(".plot-bitrate"),
      gain: q(".plot-gain"),
      rtt: q(".plot-rtt"),
    },
    inputs: {
      rate_mode: q("select.rate-mode"),
      target_kbps: q("input.target-kbps"),
      gain: q("input.gain"),
    },
    stateEls: {
      rate_mode: q(".state-rate_mode"),
      target_kbps: q(".state-target_kbps"),
      gain: q(".state-gain"),
    },
    sent: q(".sent"),
    error: q(".error"),
    human: q("figure.human"),
    humanImg: q("img.human-view"),
    humanCaption: q(".human-caption"),
    humanMode: q("select.human-mode"),
    auxState: q(".state-aux"),
    humanShown: null, // "<seq>/<mode>" of the human view shown
    lookSince: null, // when "look now" was pressed, until a new aux frame arrives
    detailError: q(".detail-error"),
    pending: new Map(), // key -> {value, since}: applied, not yet reported back
    boxesSeq: null, // the frame whose boxes are drawn
    // Picture loading: the sequence shown, the one wanted, and whether a fetch runs.
    shownSeq: null,
    wantedSeq: null,
    loading: false,
    objectUrl: null,
  };
  for (const form of el.querySelectorAll("form.control[data-key]")) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      applySetting(card, form);
    });
  }
  q("form.look").addEventListener("submit", (ev) => {
    ev.preventDefault();
    lookNow(card);
  });
  card.humanMode.addEventListener("change", () => refreshDetail(card));
  // Number inputs are filled from the reported state once, never after the
  // user has touched them.
  for (const input of [card.inputs.target_kbps, card.inputs.gain]) {
    for (const ev of ["focus", "input"]) {
      input.addEventListener(ev, () => (input.dataset.filled = "1"));
    }
  }
  // The select follows the reported mode until the user picks one.
  card.inputs.rate_mode.addEventListener("change", () => {
    card.inputs.rate_mode.dataset.touched = "1";
  });
  return card;
}

/** Update from an entry of GET /api/devices. */
function updateCard(card, d) {
  const status = d.online === true ? "online" : d.online === false ? "offline" : "unknown";
  card.status.textContent = status;
  card.status.className = `status ${status}`;
  card.el.classList.toggle("offline", d.online === false);
  card.model.textContent = d.model ? `model ${d.model}` : "";
  card.model.title = d.model || "";
  card.frames.textContent = d.frames ?? "–";
  updateState(card, d.state || {});
  confirmPending(card, d.state || {});
}

/** Show the reported state/<key> values; fill untouched inputs from them. */
function updateState(card, state) {
  for (const [key, out] of Object.entries(card.stateEls)) {
    const v = state[key];
    out.textContent = v == null ? "–" : String(v);
    const input = card.inputs[key];
    if (v == null) continue;
    if (input.tagName === "SELECT") {
      // Follow the device unless the user picked something not yet in force.
      if (input.dataset.touched && input.value === v) delete input.dataset.touched;
      if (!input.dataset.touched && RATE_MODES.includes(v)) input.value = v;
    } else if (!input.dataset.filled) {
      input.value = v;
      input.dataset.filled = "1";
    }
  }
}

/** Update from GET /api/devices/{id}. */
function updateDetail(card, detail) {
  const f = detail.latest;
  if (f) {
    card.seq.textContent = f.sequence;
    card.decodeMs.textContent = `${fmt(f.decode_ms)} ms`;
    card.detectionsCount.textContent = (f.detections || []).length;
    card.bytes.textContent = f.bytes ?? "–";
    card.seq.title = f.server ? `decoded by ${f.server}` : "";
    drawBoxes(card, f);
    requestPicture(card, f.sequence);
  }
  card.deviceStats.textContent = statsLine(detail.stats);
  drawPlots(card, detail.rate_history || []);
  card.auxState.textContent = (detail.state && detail.state.aux) || "–";
  showHuman(card, detail.aux_sequences || []);
}

// ---------------------------------------------------------------- human view

/** "Look now": the same path as the server's rules, set/aux = once. */
async function lookNow(card) {
  card.error.textContent = "";
  try {
    const r = await fetch(deviceUrl(card.id, "/set"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ key: "aux", value: "once" }),
    });
    const body = await r.json().catch(() => null);
    if (!r.ok) throw new Error((body && body.error) || `HTTP ${r.status}`);
    card.lookSince = Date.now();
    card.sent.textContent = "asked the camera for one picture; waiting for its aux frame";
    schedulePoll(500);
  } catch (e) {
    card.error.textContent = `look now failed: ${e.message}`;
  }
}

/** Show the human view of the newest frame that has an aux layer here. */
async function showHuman(card, auxSeqs) {
  if (!auxSeqs.length) {
    if (card.lookSince && Date.now() - card.lookSince > CONFIRM_MS) {
      card.error.textContent = "no aux frame came back (is an aux bundle configured on the camera?)";
      card.lookSince = null;
    }
    return;
  }
  const seq = auxSeqs[auxSeqs.length - 1];
  const mode = card.humanMode.value;
  const key = `${seq}/${mode}`;
  if (card.humanShown === key) return;
  card.humanShown = key;
  card.humanCaption.textContent = `rendering ${mode} view of frame ${seq}…`;
  card.human.hidden = false;
  try {
    const r = await fetch(deviceUrl(card.id, `/frames/${encodeURIComponent(seq)}.jpg?mode=${mode}`));
    if (!r.ok) {
      const body = await r.json().catch(() => null);
      throw new Error((body && body.error) || `HTTP ${r.status}`);
    }
    const url = URL.createObjectURL(await r.blob());
    const old = card.humanImg.src;
    card.humanImg.src = url;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    card.humanCaption.textContent = `human view (${mode}) of frame ${seq}`;
    if (card.lookSince) {
      card.sent.textContent = `picture of frame ${seq} received`;
      card.lookSince = null;
    }
  } catch (e) {
    card.humanCaption.textContent = `no human view of frame ${seq}: ${e.message}`;
  }
}

function statsLine(st) {
  if (!st || typeof st !== "object") return "";
  const parts = [];
  if (st.fps) parts.push(`${fmt(st.fps.encoded, 1)} fps encoded`);
  if (st.bitrate_kbps != null) parts.push(`${fmt(st.bitrate_kbps)} kbit/s acked`);
  if (st.latency_ms) parts.push(`latency p50 ${fmt(st.latency_ms.p50)} ms`);
  if (st.spool_depth) parts.push(`${st.spool_depth} spooled`);
  if (st.dropped) {
    const dropped = Object.values(st.dropped).reduce((a, b) => a + (Number(b) || 0), 0);
    parts.push(`${dropped} dropped`);
  }
  return parts.length ? `device: ${parts.join(", ")}` : "";
}

// ---------------------------------------------------------------- picture

/**
 * Fetch latest.jpg when the sequence changes (one fetch at a time). fetch()
 * rather than <img src> so the same response gives the X-Fchm-View header and
 * a 404 before the first picture just shows the placeholder.
 */
async function requestPicture(card, seq) {
  card.wantedSeq = seq;
  if (card.loading || seq === card.shownSeq) return;
  card.loading = true;
  try {
    while (card.wantedSeq !== card.shownSeq) {
      const want = card.wantedSeq;
      const r = await fetch(deviceUrl(card.id, `/latest.jpg?seq=${encodeURIComponent(want)}`));
      if (r.ok) {
        const url = URL.createObjectURL(await r.blob());
        const old = card.objectUrl;
        card.img.src = url;
        card.objectUrl = url;
        if (old) URL.revokeObjectURL(old);
        card.img.dataset.seq = r.headers.get("X-Fchm-Sequence") ?? want;
        card.img.hidden = false;
        card.placeholder.hidden = true;
        card.viewLabel.textContent =
          r.headers.get("X-Fchm-View") === "features" ? "decoded features" : "picture";
      } else {
        card.img.hidden = true;
        card.placeholder.hidden = false;
        card.placeholder.textContent =
          r.status === 404 ? "no picture yet" : `picture: HTTP ${r.status}`;
        card.viewLabel.textContent = "";
      }
      card.shownSeq = want;
    }
  } catch (e) {
    // Network trouble: keep what is shown; the next poll tries again.
    card.shownSeq = null;
  } finally {
    card.loading = false;
  }
}

/** Detection boxes in an SVG whose viewBox is the frame's pixel grid. */
function drawBoxes(card, frame) {
  if (card.boxesSeq === frame.sequence) return;
  card.boxesSeq = frame.sequence;
  const w = frame.width || 4;
  const hgt = frame.height || 3;
  card.picture.style.aspectRatio = `${w} / ${hgt}`;
  card.boxes.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  // Labels 11 screen pixels high, whatever the picture's displayed size.
  const fontSize = 11 * (w / (card.picture.clientWidth || w));
  const items = [];
  for (const d of frame.detections || []) {
    if (!Array.isArray(d.box) || d.box.length !== 4) continue;
    const [x1, y1, x2, y2] = d.box.map(Number);
    const colour = classColour(d.class);
    const g = s("g", { class: "box", "data-class": d.class, "data-score": d.score });
    g.append(
      s("rect", {
        x: Math.min(x1, x2), y: Math.min(y1, y2),
        width: Math.abs(x2 - x1), height: Math.abs(y2 - y1),
        stroke: colour,
      }),
    );
    const label = s("text", {
      x: Math.min(x1, x2) + fontSize * 0.2,
      y: Math.max(Math.min(y1, y2) - fontSize * 0.3, fontSize),
      "font-size": fontSize,
      fill: colour,
    });
    label.textContent = `${d.class} ${fmt(d.score, 2)}`;
    g.append(label);
    items.push(g);
  }
  card.boxes.replaceChildren(...items);
  // Keep labels inside the picture (measurable only once in the document).
  for (const label of card.boxes.querySelectorAll("text")) {
    const overflow = Number(label.getAttribute("x")) + label.getComputedTextLength() - w;
    if (overflow > 0) label.setAttribute("x", Math.max(0, w - label.getComputedTextLength()));
  }
}

// ---------------------------------------------------------------- plots

/** Bitrate (with the target dashed), gain and RTT against time. */
function drawPlots(card, history) {
  const t = history.map((p) => Number(p.t_ms));
  const series = (key) => history.map((p) => (typeof p[key] === "number" ? p[key] : null));
  const last = (xs) => [...xs].reverse().find((x) => x != null);
  const bitrate = series("bitrate_kbps");
  const target = series("target_kbps");
  const gain = series("gain");
  const rtt = series("rtt_ms");
  const span = t.length > 1 ? (t[t.length - 1] - t[0]) / 1000 : 0;
  const spanText = span > 0 ? ` · last ${fmt(span)} s` : "";

  plot(card.plots.bitrate, t, [
    { ys: bitrate, cls: "line bitrate" },
    { ys: target, cls: "line target" },
  ], `bitrate ${fmtValue(last(bitrate))} kbit/s (target ${fmtValue(last(target))})${spanText}`);
  plot(card.plots.gain, t, [{ ys: gain, cls: "line gain" }], `gain ${fmt(last(gain), 2)}`);
  plot(card.plots.rtt, t, [{ ys: rtt, cls: "line rtt" }], `RTT ${fmtValue(last(rtt))} ms`);
}

function plot(figure, t, lines, caption) {
  const svgEl = figure.querySelector("svg");
  const all = lines.flatMap((l) => l.ys).filter((y) => y != null);
  const yMax = Math.max(...all, 0) * 1.1 || 1;
  const times = t.filter(Number.isFinite);
  const t0 = Math.min(...times);
  const t1 = Math.max(...times);
  const x = (ti) => (t1 > t0 ? ((ti - t0) / (t1 - t0)) * PLOT_W : PLOT_W / 2);
  const y = (v) => PLOT_H - (v / yMax) * PLOT_H;

  const nodes = [s("line", { class: "axis", x1: 0, y1: PLOT_H, x2: PLOT_W, y2: PLOT_H })];
  for (const { ys, cls } of lines) {
    // A missing value (null) breaks the line.
    let points = [];
    const flush = () => {
      if (points.length === 1) points.push(points[0]);
      if (points.length) nodes.push(s("polyline", { class: cls, points: points.join(" ") }));
      points = [];
    };
    ys.forEach((v, i) => {
      if (v == null || !Number.isFinite(t[i])) flush();
      else points.push(`${x(t[i]).toFixed(1)},${y(v).toFixed(1)}`);
    });
    flush();
  }
  svgEl.replaceChildren(...nodes);
  // Text goes in the caption: the plot's SVG is stretched to the card's width.
  const peak = all.length ? ` · max ${fmtValue(yMax / 1.1)}` : " · no data";
  figure.querySelector("figcaption").textContent = caption + peak;
}

// ---------------------------------------------------------------- controls

/** "300" and "300.0" are the same setting; anything else compares as text. */
function sameSetting(a, b) {
  const x = Number(a);
  const y = Number(b);
  return String(a) === String(b) || (String(a).trim() !== "" && Number.isFinite(x) && x === y);
}

/** Settings applied from this card: in force once the device reports them. */
function confirmPending(card, state) {
  for (const [key, p] of card.pending) {
    const reported = state[key];
    if (reported != null && sameSetting(reported, p.value)) {
      card.pending.delete(key);
      card.sent.textContent = `${key} = ${reported} in force`;
    } else if (Date.now() - p.since > CONFIRM_MS) {
      card.pending.delete(key);
      card.sent.textContent = "";
      card.error.textContent =
        `${key} = ${p.value} not in force: the device reports ${reported ?? "nothing"} ` +
        "(a value it refuses is counted in its stats as refused_commands)";
    }
  }
}

/** POST /api/devices/{id}/set {key, value}; 202 on success, {error} otherwise. */
async function applySetting(card, form) {
  const key = form.dataset.key;
  const input = card.inputs[key];
  const button = form.querySelector("button");
  const value = String(input.value).trim();
  card.error.textContent = "";
  card.sent.textContent = "";
  if (value === "") {
    card.error.textContent = `${key}: enter a value`;
    return;
  }
  button.disabled = true;
  try {
    const r = await fetch(deviceUrl(card.id, "/set"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ key, value }),
    });
    let body = null;
    try {
      body = await r.json();
    } catch {
      // not JSON: reported by status below
    }
    if (!r.ok) throw new Error((body && body.error) || `HTTP ${r.status}`);
    const sent = body && body.value != null ? body.value : value;
    const topic = body && body.topic ? body.topic : key;
    card.sent.textContent = `sent ${topic} = ${sent}; waiting for the device`;
    card.pending.set(key, { value: sent, since: Date.now() });
    schedulePoll(500); // the reported state follows shortly
  } catch (e) {
    card.error.textContent = `${key} not applied: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

poll();
