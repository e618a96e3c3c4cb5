// The runs page: GET /v1/jobs with the filters of the form (kept in the address, so a
// filtered view can be bookmarked), a small loss curve per run, refreshed while runs are live.
"use strict";

const FILTERS = ["status", "name", "tag", "order"];
const PAGE_SIZE = 50;
const REFRESH_MS = 5000;
let nextCursor = null;
let refreshTimer = null;

function filterParams() {
  const form = new FormData(document.getElementById("filters"));
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const value = String(form.get(name) || "").trim();
    if (value) params.set(name, value);
  }
  return params;
}

function fillFiltersFromAddress() {
  const params = new URLSearchParams(location.search);
  const form = document.getElementById("filters");
  for (const name of FILTERS) {
    if (params.has(name)) form.elements[name].value = params.get(name);
  }
}

async function drawSparkline(svg, jobId) {
  const history = await api(`/v1/jobs/${encodeURIComponent(jobId)}/metrics?max_points=80`);
  const { train } = curvesOf(history);
  drawCurves(svg, [{ cls: "train", points: train }], { axes: false });
}

function runRow(job) {
  const final = job.final || {};
  const latest = job.latest || {};
  const sparkline = svgNode("svg", { class: "sparkline", viewBox: "0 0 120 32" });
  drawSparkline(sparkline, job.id).catch(() => {});
  const link = el("a", { href: `/runs/${encodeURIComponent(job.id)}` }, job.name);
  const cells = [
    el("td", {}, statusBadge(job.status)),
    el("td", {}, link, el("div", { class: "hint mono" }, job.id)),
    el("td", {}, ...tagChips(job.tags)),
    el("td", { class: "num" }, fmtNumber(final.train_loss ?? latest.train_loss)),
    el("td", { class: "num" }, fmtNumber(final.val_loss ?? latest.val_loss)),
    el("td", { class: "num" }, fmtNumber(final.val_accuracy ?? latest.val_accuracy)),
    el("td", { class: "num" }, fmtSeconds(job.timings.running_s)),
    el("td", {}, sparkline),
    el("td", { class: "hint" }, new Date(job.timings.created_at).toLocaleString()),
  ];
  return el("tr", { "data-job": job.id }, ...cells);
}

async function load({ append = false } = {}) {
  const params = filterParams();
  params.set("limit", PAGE_SIZE);
  if (append && nextCursor) params.set("cursor", nextCursor);
  try {
    const page = await api(`/v1/jobs?${params}`);
    showError("");
    const body = document.querySelector("#runs tbody");
    const rows = page.items.map(runRow);
    if (append) body.append(...rows);
    else body.replaceChildren(...rows);
    nextCursor = page.next_cursor;
    document.getElementById("more").hidden = !nextCursor;
    document.getElementById("empty").hidden = body.children.length > 0;
    // Live runs change: reload the first page while any is shown, and stop once none is.
    clearTimeout(refreshTimer);
    if (!append && page.items.some((job) => !FINISHED.includes(job.status))) {
      refreshTimer = setTimeout(load, REFRESH_MS);
    }
  } catch (error) {
    showError(error.message);
  }
}

function main() {
  if (!setUpLogin()) return;
  fillFiltersFromAddress();
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = filterParams().toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
    load();
  });
  document.getElementById("more").addEventListener("click", () => load({ append: true }));
  load();
}

main();
