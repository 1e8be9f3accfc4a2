// Live job progress over server-sent events: no framework, no build step.
"use strict";

const statusEl = document.getElementById("status");
const submitEl = document.getElementById("submit");
const rowsEl = document.getElementById("jobs");
const summaryEl = document.getElementById("summary");
const gapsEl = document.getElementById("gaps");
const runs = new Map(); // run id -> {of, done: Set of job numbers}
let latestRun = null;

// One EventSource per channel; the server shares one Redis subscription among them all.
const progress = new EventSource("/events/progress");
progress.onopen = () => {
  statusEl.textContent = "live";
  statusEl.className = "live";
};
progress.onerror = () => {
  statusEl.textContent = "reconnecting…";
  statusEl.className = "down";
};
progress.addEventListener("progress", (event) => showProgress(JSON.parse(event.data)));
// Pub/sub is at-most-once: the server says when updates were lost.
progress.addEventListener("gap", (event) => {
  gapsEl.textContent = "Some updates were lost: " + JSON.parse(event.data).reason;
});

const notifications = new EventSource("/events/notifications");
notifications.onmessage = (event) => {
  const item = document.createElement("li");
  item.textContent = JSON.parse(event.data).text;
  document.getElementById("notifications").prepend(item);
};

function run(id, of) {
  if (!runs.has(id)) runs.set(id, { of, done: new Set() });
  latestRun = id;
  return runs.get(id);
}

function row(runId, job, of) {
  const id = `job-${runId}-${job}`;
  let tr = document.getElementById(id);
  if (!tr) {
    tr = document.createElement("tr");
    tr.id = id;
    for (const name of ["name", "bar", "state", "attempt"]) {
      const td = document.createElement("td");
      td.className = name;
      tr.append(td);
    }
    tr.querySelector(".name").textContent = `${runId} · ${job}/${of}`;
    tr.querySelector(".bar").append(document.createElement("progress"));
    tr.querySelector(".state").textContent = "queued";
    rowsEl.append(tr);
  }
  return tr;
}

function showProgress(p) {
  const state = run(p.run, p.of);
  const tr = row(p.run, p.job, p.of);
  const bar = tr.querySelector("progress");
  bar.max = p.steps;
  bar.value = p.step;
  const done = p.step >= p.steps;
  tr.querySelector(".state").textContent = done ? "done" : `step ${p.step} of ${p.steps}`;
  tr.querySelector(".attempt").textContent = `pid ${p.worker} · attempt ${p.attempt}`;
  tr.classList.toggle("done", done);
  tr.classList.toggle("retried", p.attempt > 1);
  if (done) state.done.add(p.job);
  showSummary();
}

function showSummary() {
  if (latestRun === null) return;
  const { of, done } = runs.get(latestRun);
  summaryEl.className = "";
  summaryEl.textContent =
    done.size >= of
      ? `Run ${latestRun}: all ${of} jobs done`
      : `Run ${latestRun}: ${done.size} of ${of} jobs done`;
}

// Submit without leaving the page, so the event stream stays open.
document.getElementById("jobs-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  submitEl.disabled = true;
  try {
    const response = await fetch("/jobs", {
      method: "POST",
      body: new FormData(event.target),
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(await response.text());
    const queued = await response.json();
    run(queued.run, queued.count);
    for (let job = 1; job <= queued.count; job++) row(queued.run, job, queued.count);
    showSummary();
  } catch (error) {
    summaryEl.textContent = "Could not enqueue: " + error.message;
  } finally {
    submitEl.disabled = false;
  }
});

document.getElementById("notify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  await fetch("/notify", { method: "POST", body: new FormData(form) });
  form.reset();
});

async function refreshStats() {
  try {
    const s = await (await fetch("/stats")).json();
    document.getElementById("queue-stats").textContent =
      `${s.ready} ready · ${s.in_flight} in flight · ${s.consumers} workers · ${s.dead} dead`;
  } catch (error) {
    document.getElementById("queue-stats").textContent = "unavailable";
  }
}
refreshStats();
setInterval(refreshStats, 2000);
