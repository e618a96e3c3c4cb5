// One run: its state, its curves from the stored history, then live from the events stream
// (GET /v1/jobs/{id}/events, resumed after the last stored step) until the job ends.
"use strict";

const jobId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const curves = { train: [], val: [] };
let drawPending = false;
let startedAt = null; // while the job runs, the page counts its running time itself

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function draw() {
  drawCurves(document.getElementById("curve"), [
    { cls: "train", points: curves.train },
    { cls: "val", points: curves.val, dots: true },
  ], { log: document.getElementById("log-scale").checked });
}

function scheduleDraw() {
  // Steps arrive in bursts (the leader writes in batches): one redraw per frame is enough.
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    draw();
  });
}

function showProgress(step, totalSteps, epoch, epochs) {
  text("step", `${step} / ${totalSteps}`);
  text("epoch", `${epoch} / ${epochs}`);
  document.getElementById("progress-bar").style.width = `${totalSteps ? (100 * step) / totalSteps : 0}%`;
}

function showRanks(job) {
  const shards = job.spec.shards;
  const list = document.getElementById("ranks");
  if (job.workers === null) {
    text("ranks-text", `${shards} shard(s); ranks are chosen when the job starts.`);
    list.replaceChildren();
    return;
  }
  const cap = job.spec.max_workers === undefined ? "" : `; max_workers ${job.spec.max_workers}`;
  text("ranks-text", `${shards} shard(s) over ${job.workers} rank(s)${cap}.`);
  const ranks = [];
  for (let rank = 0; rank < job.workers; rank++) {
    ranks.push(el("li", { class: "rank" }, rank === 0 ? "rank 0 · leader" : `rank ${rank}`));
  }
  list.replaceChildren(...ranks);
}

function showJob(job) {
  document.title = `shardtrain · ${job.name}`;
  text("crumb-name", job.name);
  text("name", job.name);
  document.getElementById("status").replaceWith(Object.assign(statusBadge(job.status), { id: "status" }));
  text("job-id", job.id);
  text("dataset", job.dataset);
  document.getElementById("tags").replaceChildren(...tagChips(job.tags));
  showProgress(job.progress.step, job.progress.total_steps, job.progress.epoch, job.progress.epochs);
  text("throughput", fmtNumber(job.throughput.samples_per_s, 3));
  text("duration", fmtSeconds(job.timings.running_s));
  startedAt = job.status === "running" ? Date.parse(job.timings.started_at) : null;
  const metrics = job.final || job.latest || {};
  text("train-loss", fmtNumber(metrics.train_loss));
  text("val-loss", fmtNumber(metrics.val_loss));
  text("val-accuracy", fmtNumber(metrics.val_accuracy));
  text("best", job.best ? `${fmtNumber(job.best.val_loss)} at step ${job.best.step}` : "—");
  const cancelling = job.cancel_requested && !FINISHED.includes(job.status);
  const problem = job.error ? `${job.error.type}: ${job.error.message}` : cancelling ? "cancel requested" : "";
  const error = document.getElementById("job-error");
  error.textContent = problem;
  error.hidden = !problem;
  showRanks(job);
  text("spec", JSON.stringify(job.spec, null, 2));
}

function onEvent(event) {
  if (event.kind === "status") {
    showJob(event.data);
    return !FINISHED.includes(event.data.status);
  }
  const p = event.data;
  if (p.train_loss !== null) curves.train.push([p.step, p.train_loss]);
  if (p.val_loss !== null) curves.val.push([p.step, p.val_loss]);
  showProgress(p.step, p.total_steps, p.epoch, p.epochs);
  text("train-loss", fmtNumber(p.train_loss));
  if (p.val_loss !== null) text("val-loss", fmtNumber(p.val_loss));
  if (p.val_accuracy !== null) text("val-accuracy", fmtNumber(p.val_accuracy));
  text("throughput", fmtNumber(p.samples_per_s, 3));
  scheduleDraw();
  return true;
}

async function main() {
  if (!setUpLogin()) return;
  document.getElementById("log-scale").addEventListener("change", draw);
  setInterval(() => {
    if (startedAt !== null) text("duration", fmtSeconds((Date.now() - startedAt) / 1000));
  }, 1000);
  try {
    const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
    const job = await api(path);
    document.getElementById("run").hidden = false;
    showJob(job);
    const history = await api(`${path}/metrics`);
    Object.assign(curves, curvesOf(history));
    draw();
    if (!FINISHED.includes(job.status)) {
      const last = history.step.length ? history.step[history.step.length - 1] : null;
      await followEvents(`${path}/events`, last, onEvent);
    }
  } catch (error) {
    showError(error.message);
  }
}

main();
