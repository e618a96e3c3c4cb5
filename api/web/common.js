// Shared by the pages: the token, the JSON API, the events stream and SVG loss curves.
// Plain scripts, no build step and no third-party code: the service ships them as they are.
"use strict";

const TOKEN_KEY = "shardtrain.token";
const FINISHED = ["succeeded", "failed", "cancelled"];
const SVG_NS = "http://www.w3.org/2000/svg";

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// A `?token=` in the address is kept in localStorage and dropped from the address, so it is
// neither bookmarked nor shown; the pages then send it as a Bearer header like any client.
function adoptTokenFromAddress() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {
    localStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
  }
}

function token() {
  return localStorage.getItem(TOKEN_KEY);
}

function showLogin(message) {
  const login = document.getElementById("login");
  login.hidden = false;
  if (message) showError(message);
}

function setUpLogin() {
  adoptTokenFromAddress();
  document.getElementById("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, new FormData(event.target).get("token").trim());
    location.reload();
  });
  document.getElementById("forget").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  if (!token()) {
    showLogin();
    return false;
  }
  return true;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

function describe(detail) {
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  }
  return String(detail);
}

function authHeaders() {
  return { Authorization: `Bearer ${token()}` };
}

async function checked(response) {
  if (response.ok) return response;
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (response.status === 401) showLogin(`The token was refused: ${describe(body.detail)}`);
  throw new HttpError(response.status, `HTTP ${response.status}: ${describe(body.detail)}`);
}

async function api(path) {
  return (await checked(await fetch(path, { headers: authHeaders() }))).json();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Server-Sent Events read with fetch, since EventSource cannot send an Authorization header.
// Like EventSource, a dropped stream is resumed with Last-Event-ID (the last step received),
// so no step is missed. `onEvent({kind, id, data})` returns false to stop listening.
async function followEvents(path, lastId, onEvent) {
  let failures = 0;
  for (;;) {
    try {
      const headers = authHeaders();
      if (lastId !== null && lastId !== undefined) headers["Last-Event-ID"] = String(lastId);
      const response = await checked(await fetch(path, { headers }));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let fields = { kind: "message", data: [], id: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const lines = buffer.split("\n");
        buffer = lines.pop();
        for (const raw of lines) {
          const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
          if (line === "") {
            if (fields.data.length) {
              failures = 0;
              if (fields.id !== null) lastId = fields.id;
              const event = { kind: fields.kind, id: fields.id, data: JSON.parse(fields.data.join("\n")) };
              if (onEvent(event) === false) {
                reader.cancel();
                return;
              }
            }
            fields = { kind: "message", data: [], id: null };
            continue;
          }
          const colon = line.indexOf(":");
          if (colon === 0) continue; // a comment: the server's keep-alive ping
          const name = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (name === "event") fields.kind = value;
          else if (name === "data") fields.data.push(value);
          else if (name === "id") fields.id = value;
        }
      }
    } catch (error) {
      if (error instanceof HttpError && error.status < 500) throw error; // retrying cannot help
    }
    failures += 1;
    await sleep(Math.min(250 * 2 ** failures, 5000));
  }
}

// --- formatting -----------------------------------------------------------------------------

function fmtNumber(value, digits = 4) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return Math.abs(value) >= 1000 ? Math.round(value).toLocaleString() : value.toPrecision(digits);
}

// Axis labels stay short: tiny and huge values in exponent notation.
function fmtAxis(value) {
  const size = Math.abs(value);
  return size !== 0 && (size < 1e-3 || size >= 1e5) ? value.toExponential(1) : fmtNumber(value, 3);
}

function fmtSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function statusBadge(status) {
  return el("span", { class: `status ${status}` }, status);
}

function tagChips(tags) {
  return Object.entries(tags || {}).map(([key, value]) => el("span", { class: "tag" }, `${key}:${value}`));
}

// --- loss curves ----------------------------------------------------------------------------

// At most about `width` x 2 points per series: each pixel column keeps its lowest and highest
// loss, so a spike survives the thinning (as the API's own downsampling does).
function thin(points, width) {
  if (points.length <= width * 2) return points;
  const buckets = new Map();
  const first = points[0][0];
  const span = points[points.length - 1][0] - first || 1;
  for (const point of points) {
    const column = Math.floor(((point[0] - first) / span) * (width - 1));
    const bucket = buckets.get(column);
    if (!bucket) buckets.set(column, [point, point]);
    else {
      if (point[1] < bucket[0][1]) bucket[0] = point;
      if (point[1] > bucket[1][1]) bucket[1] = point;
    }
  }
  const kept = [];
  for (const [low, high] of buckets.values()) {
    if (low === high) kept.push(low);
    else kept.push(...(low[0] < high[0] ? [low, high] : [high, low]));
  }
  return kept;
}

function svgNode(tag, attributes) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

// Draws `series` ([{cls, points: [[step, loss], ...], dots}]) into `svg`, scaled to its
// viewBox; with `axes`, step and loss labels at the edges; with `log`, loss on a log scale
// (where losses spanning decades stay readable). Each series is one <path>.
function drawCurves(svg, series, { axes = true, log = false } = {}) {
  const box = svg.viewBox.baseVal;
  const pad = axes ? { left: 64, right: 12, top: 10, bottom: 28 } : { left: 2, right: 2, top: 2, bottom: 2 };
  if (log) {
    series = series.map((s) => ({ ...s, points: s.points.map(([x, y]) => [x, y > 0 ? Math.log10(y) : NaN]) }));
  }
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]));
  svg.replaceChildren();
  if (!all.length) {
    if (axes) {
      const text = svgNode("text", { x: box.width / 2, y: box.height / 2, class: "axis", "text-anchor": "middle" });
      text.textContent = "no steps recorded yet";
      svg.append(text);
    }
    return;
  }
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [x, y] of all) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const width = box.width - pad.left - pad.right;
  const height = box.height - pad.top - pad.bottom;
  const sx = (x) => (pad.left + ((x - x0) / (x1 - x0)) * width).toFixed(1);
  const sy = (y) => (pad.top + (1 - (y - y0) / (y1 - y0)) * height).toFixed(1);
  if (axes) {
    for (let i = 0; i <= 4; i++) {
      const value = y0 + ((y1 - y0) * i) / 4;
      svg.append(svgNode("line", { x1: pad.left, x2: box.width - pad.right, y1: sy(value), y2: sy(value), class: "grid" }));
      const label = svgNode("text", { x: pad.left - 6, y: sy(value), class: "axis", "text-anchor": "end", "dominant-baseline": "middle" });
      label.textContent = fmtAxis(log ? 10 ** value : value);
      svg.append(label);
    }
    for (const [value, anchor] of [[x0, "start"], [x1, "end"]]) {
      const label = svgNode("text", { x: sx(value), y: box.height - 8, class: "axis", "text-anchor": anchor });
      label.textContent = `step ${Math.round(value)}`;
      svg.append(label);
    }
  }
  for (const { cls, points, dots } of series) {
    const finite = thin(points.filter((p) => Number.isFinite(p[1])), width);
    if (!finite.length) continue;
    const d = finite.map(([x, y], i) => `${i ? "L" : "M"}${sx(x)},${sy(y)}`).join(" ");
    svg.append(svgNode("path", { d, class: `curve ${cls}`, "data-points": finite.length }));
    if (dots && axes && finite.length <= 200) {
      for (const [x, y] of finite) svg.append(svgNode("circle", { cx: sx(x), cy: sy(y), r: 2.5, class: `dot ${cls}` }));
    }
  }
}

// The columnar history of GET /v1/jobs/{id}/metrics as train and validation points.
function curvesOf(history) {
  const train = [];
  const val = [];
  history.step.forEach((step, i) => {
    if (history.train_loss[i] !== null) train.push([step, history.train_loss[i]]);
    if (history.val_loss[i] !== null) val.push([step, history.val_loss[i]]);
  });
  return { train, val };
}
