// The orc dashboard: tasks, one task's detail, jobs, nodes, cluster health and a submit form,
// all from the manager's public API and kept live by its event stream.
//
// Requests: at start `GET /stats` and `GET /tasks` (one snapshot), `GET /nodes`, `GET /jobs`,
// then one long-lived `GET /events`. After that the page asks only when something calls for
// it: the task a person opens (its task, history and logs), `GET /nodes` at most every 2 s
// while events move capacity, `GET /jobs` at most every second while events about jobs or
// their tasks arrive, the open job's story (`GET /jobs/{id}/history`) at most every 2 s while
// events about it arrive, `GET /metrics` (for the newest snapshot) at most every 10 s while
// events arrive, and the open task's logs every 5 s while it runs and the tab is visible.

import { ApiError, request } from "./api.js";
import { Cluster, ENDED, STATE_NAMES } from "./model.js";
import { EventFollower } from "./stream.js";
import { VirtualTable } from "./table.js";

const $ = (id) => document.getElementById(id);
const ROW_HEIGHT = 32; // px; the same as --row in style.css
const MAX_ERRORS = 50;
const LOG_LINES = 200;

const cluster = new Cluster();
const view = { text: "", state: "", job: "", sort: "created", descending: true, selected: "" };
// The jobs (GET /jobs: the manager's views), the one opened and its story. `supported` is
// false when the manager has no jobs API (an older orc): the section is hidden.
const jobs = { supported: true, list: [], selected: "", story: null, message: "" };
const health = {
  logSeq: 0,
  snapshot: null, // the newest snapshot's figures (GET /metrics), and when they were read
  snapshotRead: 0,
  nodes: [],
  stream: "connecting",
  errors: [],
};

// -- small helpers ----------------------------------------------------------------------------

// Builds an element; children are nodes or text (never parsed as HTML: task names and logs
// come from clients and must stay text).
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== undefined && c !== null));
  return node;
}

function stateBadge(state) {
  return el("span", { class: "state", "data-state": state, text: STATE_NAMES.get(state) ?? state });
}

function ago(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.floor(seconds)}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function bytes(n) {
  if (!n) return "0";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
  return `${(n / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// An argument as it would be typed into the command field (see splitArgs).
function quoted(arg) {
  return arg && !/[\s'"\\]/.test(arg) ? arg : `'${arg.replaceAll("'", `'"'"'`)}'`;
}

function lastLines(text, n) {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.slice(-n).join("\n");
}

// Calls `fn` at most once per `ms`, always once more after the last request (trailing), and
// never two at a time.
function throttled(fn, ms) {
  let last = 0;
  let timer = 0;
  let running = false;
  let again = false;
  const call = async () => {
    timer = 0;
    if (running) {
      again = true;
      return;
    }
    running = true;
    last = Date.now();
    try {
      await fn();
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (timer) return;
    timer = setTimeout(call, Math.max(0, last + ms - Date.now()));
  };
  return schedule;
}

function report(what, error) {
  const message = error instanceof ApiError ? `${error.status}: ${error.message}` : error.message;
  noteError(new Date().toISOString(), `${what}: ${message}`);
}

function noteError(at, text) {
  health.errors.unshift({ at, text });
  health.errors.length = Math.min(health.errors.length, MAX_ERRORS);
  draw("health");
}

// -- drawing, once per frame ------------------------------------------------------------------

const dirty = new Set();
let frame = 0;

function draw(...parts) {
  for (const part of parts) dirty.add(part);
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  cancelAnimationFrame(frame);
  frame = 0;
  const parts = new Set(dirty);
  dirty.clear();
  if (parts.has("tasks")) drawTasks();
  if (parts.has("detail")) drawDetail();
  if (parts.has("nodes")) drawNodes();
  if (parts.has("jobs")) drawJobs();
  if (parts.has("jobs") || parts.has("job")) drawJobDetail();
  if (parts.has("health") || parts.has("tasks")) drawHealth();
}

// -- the task table ---------------------------------------------------------------------------

const SORTS = {
  name: (t) => t.Name.toLowerCase(),
  id: (t) => t.ID,
  state: (t) => t.State,
  node: (t) => t.Node,
  restarts: (t) => t.RestartCount,
  created: (t) => t.CreatedAt ?? "",
  updated: (t) => t.UpdatedAt ?? "",
};

function matches(task, text) {
  if (!text) return true;
  return (
    task.ID.startsWith(text) ||
    task.Name.toLowerCase().includes(text) ||
    task.Node.toLowerCase().includes(text) ||
    task.Image.toLowerCase().includes(text) ||
    (task.Cmd ?? []).join(" ").toLowerCase().includes(text)
  );
}

// The job filter: "" every task, "-" the tasks of no job, else one job's.
function ofJob(task, job) {
  if (!job) return true;
  return job === "-" ? !task.JobID : task.JobID === job;
}

function shownTasks() {
  const state = view.state === "" ? null : Number(view.state);
  const text = view.text.trim().toLowerCase();
  const key = SORTS[view.sort];
  const rows = [];
  for (const task of cluster.tasks.values()) {
    if ((state === null || task.State === state) && ofJob(task, view.job) && matches(task, text)) {
      rows.push(task);
    }
  }
  const sign = view.descending ? -1 : 1;
  // Ties fall back to the ID, so rows do not swap places from one render to the next.
  rows.sort((a, b) => {
    const x = key(a);
    const y = key(b);
    return (x < y ? -1 : x > y ? 1 : a.ID < b.ID ? -1 : 1) * sign;
  });
  return rows;
}

function makeRow() {
  const tr = el("tr", { class: "task" });
  const name = el("button", { type: "button", class: "name" });
  tr.append(
    el("td", {}, name),
    el("td", { class: "mono" }),
    el("td", {}, el("span", { class: "state" })),
    el("td"),
    el("td"),
    el("td"),
    el("td"),
  );
  return tr;
}

// Writes a task into a reused row, touching only what changed.
function fillRow(tr, task) {
  const now = Date.now();
  const [name, id, state, node, restarts, created, updated] = tr.cells;
  tr.dataset.id = task.ID;
  if (task.ID === view.selected) tr.setAttribute("aria-current", "true");
  else tr.removeAttribute("aria-current");
  setText(name.firstChild, task.Name || "(no name)");
  name.firstChild.title = task.Name;
  setText(id, task.ID.slice(0, 8));
  id.title = task.ID;
  const badge = state.firstChild;
  badge.dataset.state = String(task.State);
  setText(badge, stateLabel(task));
  setText(node, task.Node);
  setText(restarts, String(task.RestartCount));
  setText(created, ago(task.CreatedAt, now));
  created.title = when(task.CreatedAt);
  setText(updated, ago(task.UpdatedAt, now));
  updated.title = task.Error ? `${when(task.UpdatedAt)}: ${task.Error}` : when(task.UpdatedAt);
}

// "Running (stopping)" between a stop request and the end it asks for.
function stateLabel(task) {
  return task.Stopping && !ENDED.has(task.State) ? `${task.StateName} (stopping)` : task.StateName;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

let table;
let firstRender = true;

function drawTasks() {
  const rows = shownTasks();
  table.setItems(rows);
  const all = cluster.tasks.size;
  const tasks = all === 1 ? "task" : "tasks";
  $("task-count").textContent =
    rows.length === all ? `${all} ${tasks}` : `${rows.length} of ${all} ${tasks}`;
  $("task-empty").hidden = all > 0;
  if (firstRender) {
    firstRender = false;
    // For bench/dashboard.py and the tests: the first table with data is on screen at the
    // next frame.
    requestAnimationFrame(() => {
      performance.mark("orc-first-render");
      document.body.dataset.ready = "true";
    });
  }
}

function setUpTable() {
  table = new VirtualTable({
    scroller: $("task-scroll"),
    body: $("task-rows"),
    rowHeight: ROW_HEIGHT,
    make: makeRow,
    fill: fillRow,
  });
  $("task-rows").addEventListener("click", (event) => {
    const tr = event.target.closest("tr.task");
    if (tr) select(tr.dataset.id);
  });
  $("task-filter").addEventListener("input", (event) => {
    view.text = event.target.value;
    draw("tasks");
  });
  $("state-filter").addEventListener("change", (event) => {
    view.state = event.target.value;
    draw("tasks");
  });
  $("job-filter").addEventListener("change", (event) => {
    view.job = event.target.value;
    draw("tasks");
  });
  for (const button of document.querySelectorAll("th button[data-sort]")) {
    button.addEventListener("click", () => {
      const sort = button.dataset.sort;
      // A new column sorts newest/largest first for times and counts, A to Z for words.
      if (view.sort === sort) view.descending = !view.descending;
      else view.descending = ["created", "updated", "restarts"].includes(sort);
      view.sort = sort;
      markSorted();
      draw("tasks");
    });
  }
  markSorted();
  // Ages ("12s ago") move with the clock: redraw the rows in view, with no request.
  setInterval(() => table.render(), 5000);
}

function markSorted() {
  for (const button of document.querySelectorAll("th button[data-sort]")) {
    const th = button.parentElement;
    if (button.dataset.sort !== view.sort) th.removeAttribute("aria-sort");
    else th.setAttribute("aria-sort", view.descending ? "descending" : "ascending");
  }
}

// -- one task ---------------------------------------------------------------------------------

const detail = { task: null, history: null, logs: null, message: "", error: false };

// The address keeps what is open (`#task=ID&job=ID`), so that a link opens it again.
function saveHash() {
  const open = new URLSearchParams();
  if (view.selected) open.set("task", view.selected);
  if (jobs.selected) open.set("job", jobs.selected);
  history.replaceState(null, "", `#${open}`);
}

function select(id) {
  if (!id) return;
  view.selected = id;
  saveHash();
  detail.task = cluster.tasks.get(id) ?? null;
  detail.history = null;
  detail.logs = null;
  detail.message = "";
  draw("detail", "tasks");
  refreshDetail(true);
}

// The open task as orc has it now: its task, its history and (when asked) its logs.
async function refreshDetail(withLogs) {
  const id = view.selected;
  if (!id) return;
  try {
    const [task, story] = await Promise.all([
      request("GET", `tasks/${id}`),
      request("GET", `tasks/${id}/history`),
    ]);
    if (id !== view.selected) return;
    cluster.put({ ...task, Stopping: cluster.tasks.get(id)?.Stopping && !ENDED.has(task.State) });
    detail.task = cluster.tasks.get(id);
    detail.history = story;
    draw("detail", "tasks");
  } catch (error) {
    if (id !== view.selected) return;
    if (error instanceof ApiError && error.status === 404) {
      detail.task = null;
      detail.message = `Task ${id} is not known to orc (never submitted, or forgotten since).`;
      detail.error = true;
      draw("detail");
      return;
    }
    report(`task ${id.slice(0, 8)}`, error);
  }
  if (withLogs) await refreshLogs();
}

async function refreshLogs() {
  const id = view.selected;
  if (!id) return;
  try {
    const logs = await request("GET", `tasks/${id}/logs`);
    if (id !== view.selected) return;
    detail.logs = logs;
    draw("detail");
  } catch (error) {
    const gone = error instanceof ApiError && error.status === 404; // forgotten: said elsewhere
    if (!gone) report(`logs of ${id.slice(0, 8)}`, error);
  }
}

// Events about the open task come in bursts (scheduled, started, ...): read it once after.
let detailTimer = 0;
function detailChanged() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(() => refreshDetail(true), 250);
}

function drawDetail() {
  const task = detail.task;
  $("detail-empty").hidden = Boolean(task) || Boolean(detail.message);
  $("detail-body").hidden = !task && !detail.message;
  const message = $("detail-message");
  message.textContent = detail.message;
  message.classList.toggle("error", detail.error);
  const stop = $("stop-button");
  stop.disabled = !task || ENDED.has(task.State) || Boolean(task.Stopping);
  if (!task) {
    $("detail-fields").replaceChildren();
    $("history").replaceChildren();
    $("history-totals").textContent = "";
    return;
  }
  const state = stateBadge(task.State);
  state.textContent = stateLabel(task);
  const what = task.Image ? `image ${task.Image}` : (task.Cmd ?? []).map(quoted).join(" ");
  const ports = Object.entries(task.HostPorts ?? {})
    .map(([port, to]) => `${port} → ${to.map((b) => `${b.HostIp}:${b.HostPort}`).join(", ")}`)
    .join("; ");
  const rows = [
    ["Name", task.Name || "(no name)"],
    ["ID", el("span", { class: "mono", text: task.ID })],
    ["State", state],
    ["Node", task.Node || "(not placed)"],
    ["Runs", `${task.Driver}: ${what}`],
    ["Job", task.JobID ? jobOfTask(task) : ""],
    ["Exit code", task.ExitCode ?? ""],
    ["Error", task.Error],
    ["Restarts", task.RestartCount ? `${task.RestartCount} (${task.RestartPolicy})` : ""],
    ["Ports", ports],
    ["Created", when(task.CreatedAt)],
    ["Started", when(task.StartsAt)],
    ["Finished", when(task.FinishedAt)],
  ];
  $("detail-fields").replaceChildren(
    ...rows
      .filter(([, value]) => value !== "" && value !== null && value !== undefined)
      .flatMap(([name, value]) => [el("dt", { text: name }), el("dd", {}, value)]),
  );
  drawHistory(detail.history);
  const logs = detail.logs;
  $("logs-stdout").textContent = logs ? lastLines(logs.Stdout, LOG_LINES) : "";
  $("logs-stderr").textContent = logs ? lastLines(logs.Stderr, LOG_LINES) : "";
}

const STATE_NUMBERS = new Map([...STATE_NAMES].map(([n, name]) => [name, n]));

// "web, slot 1, version 2", the job's name a link that opens it.
function jobOfTask(task) {
  const open = el("button", { type: "button", class: "link", text: task.JobID });
  open.addEventListener("click", () => selectJob(task.JobID));
  const slot = task.Slot >= 0 ? `, slot ${task.Slot}` : "";
  return el("span", {}, open, `${slot}, version ${task.JobVersion}`);
}

function drawHistory(story) {
  if (!story) {
    $("history").replaceChildren(el("li", { class: "muted", text: "reading the log…" }));
    $("history-totals").textContent = "";
    return;
  }
  // Newest first: the question is usually "what just happened".
  const items = [...story.rows].reverse().map((row) => {
    const moved = row.from !== row.to && row.to;
    const change = row.to ? (moved && row.from ? `${row.from} → ${row.to}` : row.to) : "";
    return el(
      "li",
      { "data-state": row.to ? STATE_NUMBERS.get(row.to) : undefined },
      el("span", { class: "when", text: `#${row.seq} ${when(row.at)}` }),
      " ",
      el("strong", { text: row.event }),
      change ? ` ${change}` : "",
      row.node ? ` on ${row.node}` : "",
      row.reason ? el("span", { class: "reason", text: row.reason }) : null,
      row.violation ? el("span", { class: "violation", text: `skipped: ${row.violation}` }) : null,
    );
  });
  $("history").replaceChildren(...items);
  const spent = { ...story.totals };
  const open = story.periods?.at(-1);
  if (open?.open) {
    // The log counts the state the task is still in up to its last event; count it to now.
    spent[open.state] += Math.max(0, (Date.now() - Date.parse(open.since)) / 1000 - open.seconds);
  }
  const totals = Object.entries(spent).map(
    ([state, s]) => `${state} ${seconds(s)}${open?.open && state === open.state ? " so far" : ""}`,
  );
  $("history-totals").textContent = totals.length
    ? `Time in each state: ${totals.join(" · ")}`
    : "";
}

function setUpDetail() {
  $("stop-button").addEventListener("click", async () => {
    const id = view.selected;
    const stop = $("stop-button");
    stop.disabled = true;
    try {
      await request("DELETE", `tasks/${id}`);
      detail.message = "Stop requested: the task ends once its process or container is gone.";
      detail.error = false;
    } catch (error) {
      const refused = error instanceof ApiError;
      detail.message = refused ? `orc refused (${error.status}): ${error.message}` : String(error);
      detail.error = true;
    }
    draw("detail");
  });
  $("logs-refresh").addEventListener("click", () => refreshLogs());
  // A running task writes logs without events: read them now and then, only while someone
  // can see them.
  setInterval(() => {
    if (detail.task?.State === 2 && document.visibilityState === "visible") refreshLogs();
  }, 5000);
}

// -- the submit form --------------------------------------------------------------------------

// argv from a line typed as in a shell: words split on spaces, '…' and "…" keep spaces, a
// backslash escapes the next character. Nothing is expanded, since no shell will run it.
export function splitArgs(line) {
  const args = [];
  let word = null;
  let quote = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = "";
      else if (c === "\\" && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= "";
    } else if (c === "\\" && i + 1 < line.length) {
      word = (word ?? "") + line[++i];
    } else if (/\s/.test(c)) {
      if (word !== null) args.push(word);
      word = null;
    } else {
      word = (word ?? "") + c;
    }
  }
  if (quote) throw new Error(`the command has an unclosed ${quote} quote`);
  if (word !== null) args.push(word);
  return args;
}

// A number when the field reads as one; otherwise the text as typed, so that orc's answer
// (400, naming the field) is what the person sees.
function numberOr(text, scale = 1) {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) return text;
  return scale === 1 ? n : Math.round(n * scale);
}

function taskFromForm(form) {
  const f = new FormData(form);
  const text = (name) => String(f.get(name) ?? "").trim();
  const task = {};
  if (text("name")) task.Name = text("name");
  if (text("cmd")) task.Cmd = splitArgs(text("cmd"));
  if (text("image")) task.Image = text("image");
  const env = text("env").split("\n").map((l) => l.trim()).filter(Boolean);
  if (env.length) task.Env = env;
  if (text("cpu")) task.CPU = numberOr(text("cpu"));
  if (text("memory")) task.Memory = numberOr(text("memory"), 1024 * 1024);
  if (text("restart")) task.RestartPolicy = text("restart");
  if (text("health")) task.HealthCheck = text("health");
  return task;
}

function setUpForm() {
  const form = $("submit-form");
  const message = $("submit-message");
  const say = (text, error) => {
    message.textContent = text;
    message.classList.toggle("error", error);
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let task;
    try {
      task = taskFromForm(form);
    } catch (error) {
      say(error.message, true);
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    say("Submitting…", false);
    try {
      const recorded = await request("POST", "tasks", { body: { State: 2, Task: task } });
      const t = recorded.Task ?? recorded;
      say(`Submitted ${t.Name || "task"} (${t.ID.slice(0, 8)}): it is ${t.StateName}.`, false);
      if (!cluster.tasks.has(t.ID)) cluster.put(t); // the event may still be on its way
      draw("tasks");
      select(t.ID);
    } catch (error) {
      const refused = error instanceof ApiError;
      say(refused ? `orc refused the task (${error.status}): ${error.message}` : `${error}`, true);
    } finally {
      button.disabled = false;
    }
  });
}

// -- jobs -------------------------------------------------------------------------------------

const refreshJobs = throttled(async () => {
  if (!jobs.supported) return;
  try {
    jobs.list = await request("GET", "jobs");
    draw("jobs");
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) {
      jobs.supported = false; // an orc without jobs: say nothing, show nothing
      draw("jobs");
      return;
    }
    report("jobs", error);
  }
}, 1000);

// What a job runs now: "2/3" (running of its count); a batch job adds what it completed.
function jobRunning(job) {
  const running = job.Tasks?.Running ?? 0;
  if (job.Type === "system") return `${running} (one per node)`;
  const done = job.Type === "batch" ? ` · ${job.Tasks?.Completed ?? 0} done` : "";
  return `${running}/${job.Count}${done}`;
}

function jobDeployment(job) {
  const d = job.Deployment;
  if (!d) return "";
  const unhealthy = d.Unhealthy ? `, ${d.Unhealthy} unhealthy` : "";
  return `v${d.Version} ${d.State}: ${d.Placed}/${d.Desired} placed, ${d.Healthy} healthy${unhealthy}`;
}

function jobVersion(job) {
  const stable = job.StableVersion;
  return stable >= 0 && stable !== job.Version ? `v${job.Version} (stable v${stable})` : `v${job.Version}`;
}

function drawJobs() {
  $("jobs").hidden = !jobs.supported;
  if (!jobs.supported) return;
  const rows = jobs.list.map((job) => {
    const name = el("button", { type: "button", class: "name", text: job.ID });
    const deployment = jobDeployment(job);
    return el(
      "tr",
      { "data-id": job.ID, "aria-current": job.ID === jobs.selected ? "true" : undefined },
      el(
        "th",
        { scope: "row" },
        name,
        job.Parent ? el("div", { class: "muted", text: `a run of ${job.Parent}` }) : null,
      ),
      el("td", { text: job.Type }),
      el("td", {}, el("span", { class: "job-status", "data-status": job.Status, text: job.Status })),
      el("td", { text: jobVersion(job) }),
      el("td", { class: "running", text: jobRunning(job) }),
      el("td", {
        class: "deployment",
        "data-state": job.Deployment?.State,
        title: job.Deployment?.Reason || undefined,
        text: deployment,
      }),
      el("td", { class: "waiting", text: job.Waiting }),
    );
  });
  $("job-rows").replaceChildren(...rows);
  const n = jobs.list.length;
  $("job-count").textContent = `${n} ${n === 1 ? "job" : "jobs"}`;
  $("jobs-empty").hidden = n > 0;
  // The task table's job filter offers every job (keeping what is chosen).
  const filter = $("job-filter");
  const wanted = ["", "-", ...jobs.list.map((j) => j.ID)];
  const have = [...filter.options].map((o) => o.value);
  if (wanted.join("\n") !== have.join("\n")) {
    const extra = jobs.list.map((j) => el("option", { value: j.ID, text: j.ID }));
    filter.replaceChildren(...[...filter.options].slice(0, 2), ...extra);
    filter.value = wanted.includes(view.job) ? view.job : "";
  }
}

function selectJob(id) {
  if (!id) return;
  jobs.selected = id;
  jobs.story = null;
  jobs.message = "";
  saveHash();
  draw("jobs");
  refreshJobStory();
  $("jobs").scrollIntoView({ block: "nearest" });
}

async function refreshJobStory() {
  const id = jobs.selected;
  if (!id || !jobs.supported) return;
  try {
    const story = await request("GET", `jobs/${encodeURIComponent(id)}/history`);
    if (id !== jobs.selected) return;
    jobs.story = story;
    jobs.message = "";
  } catch (error) {
    if (id !== jobs.selected) return;
    if (error instanceof ApiError && error.status === 404) {
      jobs.story = null;
      jobs.message = `Job ${id} is not known to orc.`;
    } else {
      report(`job ${id}`, error);
    }
  }
  draw("job");
}

// Events about the open job come in bursts (a decision, then its tasks' events): its story
// is the whole log read again, so it is read at most every 2 s.
const jobStoryChanged = throttled(refreshJobStory, 2000);

const MAX_STORY_LINES = 200;

function jobLine(line) {
  const decision = Boolean(line.action);
  const what = decision ? line.action : line.event;
  const slot = line.slot !== null && line.slot >= 0 ? ` slot ${line.slot}` : "";
  const version = line.version !== null ? ` v${line.version}` : "";
  const moved = line.to && line.from !== line.to;
  const change = moved ? (line.from ? `${line.from} → ${line.to}` : line.to) : "";
  return el(
    "li",
    {
      class: decision ? "decision" : undefined,
      "data-state": moved ? STATE_NUMBERS.get(line.to) : undefined,
    },
    el("span", { class: "when", text: `#${line.seq} ${when(line.at)}` }),
    " ",
    el("strong", { class: decision ? "action" : undefined, text: what }),
    line.task ? el("span", { class: "mono", text: ` ${line.task.slice(0, 8)}` }) : null,
    `${slot}${version}`,
    change ? ` ${change}` : "",
    line.node ? ` on ${line.node}` : "",
    line.reason ? el("span", { class: "reason", text: line.reason }) : null,
    line.violation ? el("span", { class: "violation", text: `!! ${line.violation}` }) : null,
  );
}

function drawJobDetail() {
  const id = jobs.selected;
  const job = jobs.list.find((j) => j.ID === id) ?? jobs.story?.job ?? null;
  $("job-detail").hidden = !id || !jobs.supported;
  if (!id) return;
  $("job-detail-title").textContent = `Job ${id}`;
  if (!job) {
    $("job-fields").replaceChildren(
      el("dt", { text: "Job" }),
      el("dd", { text: jobs.message || "reading…" }),
    );
    $("job-history").replaceChildren();
    return;
  }
  const counts = Object.entries(job.Tasks ?? {})
    .filter(([, n]) => n)
    .map(([state, n]) => `${state} ${n}`)
    .join(" · ");
  const d = job.Deployment;
  const story = jobs.story;
  const versions = (story?.versions ?? [])
    .slice(-5)
    .map((v) => `v${v.version}: ${v.reason}${v.rolling_update ? " (rolling update)" : ""}`)
    .join("; ");
  const runs = (story?.runs ?? []).map((r) => `${r.id} ${r.status}`).join("; ");
  const rows = [
    ["Type", job.Type + (job.Parent ? `, a run of ${job.Parent}` : "")],
    ["Status", job.Status],
    ["Version", jobVersion(job)],
    ["Running", jobRunning(job)],
    ["Tasks", counts || "none"],
    ["Deployment", d ? `${jobDeployment(job)}${d.Reason ? ` (${d.Reason})` : ""}` : ""],
    ["Waiting for", job.Waiting],
    ["Versions", versions],
    ["Runs", runs],
  ];
  $("job-fields").replaceChildren(
    ...rows
      .filter(([, value]) => value)
      .flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]),
  );
  if (!story) {
    const text = jobs.message || "reading the log…";
    $("job-history").replaceChildren(el("li", { class: "muted", text }));
    return;
  }
  const lines = story.events.slice(-MAX_STORY_LINES).reverse().map(jobLine);
  $("job-history").replaceChildren(...lines);
}

function setUpJobs() {
  $("job-rows").addEventListener("click", (event) => {
    const tr = event.target.closest("tr[data-id]");
    if (tr) selectJob(tr.dataset.id);
  });
  $("job-tasks-button").addEventListener("click", () => {
    view.job = jobs.selected;
    const filter = $("job-filter");
    if (![...filter.options].some((o) => o.value === view.job)) {
      filter.append(el("option", { value: view.job, text: view.job }));
    }
    filter.value = view.job;
    draw("tasks");
    $("tasks").scrollIntoView({ block: "nearest" });
  });
}

// -- nodes and health -------------------------------------------------------------------------

const refreshNodes = throttled(async () => {
  try {
    health.nodes = await request("GET", "nodes");
    draw("nodes", "health");
  } catch (error) {
    report("nodes", error);
  }
}, 2000);

const refreshSnapshot = throttled(async () => {
  try {
    health.snapshot = await snapshotFigures();
    health.snapshotRead = Date.now();
    draw("health");
  } catch (error) {
    report("metrics", error);
  }
}, 10_000);

// The newest snapshot, as the manager's GET /metrics tells it (Prometheus text): its seq, its
// age in seconds, and the events logged since (what a restart would replay). null when the
// manager does not report them.
const SNAPSHOT_GAUGES = /^orc_snapshot_(last_seq|age_seconds|age_events)\s+(\S+)$/gm;

async function snapshotFigures() {
  const response = await request("GET", "metrics", { raw: true });
  if (!response.ok) return null;
  const figures = {};
  for (const [, name, value] of (await response.text()).matchAll(SNAPSHOT_GAUGES)) {
    figures[name] = Number(value);
  }
  return "last_seq" in figures ? figures : null;
}

// Kept current between reads of /metrics: the age grows from when the figures were `read`, and
// the events since the snapshot are the live log sequence past its seq.
function describeSnapshot(figures, read, logSeq) {
  if (!figures) return "not reported by this manager";
  const events = Math.max(figures.age_events, logSeq - figures.last_seq);
  const since = `${events} event${events === 1 ? "" : "s"} logged since`;
  if (!figures.last_seq) return `none yet (${since})`;
  const age = figures.age_seconds + (Date.now() - read) / 1000;
  const ago = Number.isFinite(age) ? `, ${seconds(age)} ago` : "";
  return `at seq ${figures.last_seq}${ago}; ${since}`;
}

function meter(used, total, label) {
  const max = total || 1;
  const bar = el("meter", { min: 0, max, value: Math.min(used, max), "aria-label": label });
  return el("td", {}, label, bar);
}

function drawNodes() {
  const now = Date.now();
  const rows = health.nodes.map((n) => {
    const down = n.State !== "up";
    return el(
      "tr",
      {},
      el("th", { scope: "row" }, n.Name, el("div", { class: "muted", text: n.Address })),
      el("td", { class: down ? "down" : "" }, n.State, down ? el("div", { text: n.Reason }) : null),
      meter(n.Allocated.CPU, n.Cores, `${Number(n.Allocated.CPU.toFixed(2))} / ${n.Cores} cores`),
      meter(n.Allocated.Memory, n.Memory, `${bytes(n.Allocated.Memory)} / ${bytes(n.Memory)}`),
      meter(n.Allocated.Disk, n.Disk, `${bytes(n.Allocated.Disk)} / ${bytes(n.Disk)}`),
      el("td", { text: n.TaskCount }),
      el("td", { text: n.LastHeartbeat ? ago(n.LastHeartbeat, now) : "in process" }),
    );
  });
  if (!rows.length) {
    rows.push(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No nodes yet." })));
  }
  $("node-rows").replaceChildren(...rows);
}

function drawHealth() {
  const counts = new Map([...STATE_NAMES.keys()].map((s) => [s, 0]));
  for (const task of cluster.tasks.values()) {
    counts.set(task.State, (counts.get(task.State) ?? 0) + 1);
  }
  const down = health.nodes.filter((n) => n.State !== "up");
  const rows = [
    ["Event stream", health.stream],
    ["Log sequence", String(health.logSeq)],
    ["Snapshot", describeSnapshot(health.snapshot, health.snapshotRead, health.logSeq)],
    ["Tasks", [...counts].map(([s, n]) => `${STATE_NAMES.get(s)} ${n}`).join(" · ")],
    ["Nodes", `${health.nodes.length - down.length} up, ${down.length} down`],
  ];
  for (const n of down) rows.push([`Node ${n.Name}`, `down: ${n.Reason || "no heartbeat"}`]);
  $("health-fields").replaceChildren(
    ...rows.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]),
  );
  const errors = health.errors.map((e) =>
    el("li", {}, el("span", { class: "when", text: when(e.at) }), e.text),
  );
  const none = el("li", { class: "muted none", text: "None since the page opened." });
  $("errors").replaceChildren(...(errors.length ? errors : [none]));
}

// What in an event is worth a line under "Recent errors".
function errorOf(event, task) {
  const who = task ? `${task.Name || "task"} (${task.ID.slice(0, 8)})` : "";
  switch (event.Type) {
    case "TaskFailed":
      return `${who} failed: ${event.Error}`;
    case "TaskExited": {
      if (event.Stopped || event.ExitCode === 0) return "";
      return `${who} exited ${event.ExitCode ?? "?"}${event.Error ? `: ${event.Error}` : ""}`;
    }
    case "TaskUnhealthy":
      return `${who} unhealthy: ${event.Reason}`;
    case "TaskRestarting":
      return `${who} restarting: ${event.Reason}`;
    case "NodeDown":
      return `node ${event.Node} down: ${event.Reason}`;
    default:
      return "";
  }
}

// -- following the cluster --------------------------------------------------------------------

// The first picture: GET /stats before GET /tasks, so the events after its LogSeq cover
// everything the task list might lack. Some of them may already be in the list; applying one
// again sets the same fields again, and the stream, applied in order, ends at the same state.
async function snapshot() {
  const stats = await request("GET", "stats");
  const tasks = await request("GET", "tasks");
  cluster.load(tasks);
  health.logSeq = stats.LogSeq;
  // Drawn now rather than at the next frame: the table is what the person is waiting for.
  draw("tasks", "health", "detail");
  flush();
  refreshNodes();
  refreshJobs();
  refreshSnapshot(); // after the table, which matters more
  return stats.LogSeq;
}

function onEvents(lines) {
  let events = 0;
  let tasksChanged = false;
  let nodesChanged = false;
  let jobsChanged = false;
  let selectedChanged = false;
  let jobChanged = false;
  for (const line of lines) {
    health.logSeq = Math.max(health.logSeq, line.Seq);
    const event = line.Event;
    if (!event) continue; // a heartbeat
    events++;
    const before = cluster.tasks.get(event.TaskID ?? event.Task?.ID);
    const touched = cluster.apply(event);
    const problem = errorOf(event, before ?? cluster.tasks.get(touched.task));
    if (problem) noteError(event.At, problem);
    tasksChanged ||= Boolean(touched.task);
    nodesChanged ||= touched.nodes;
    jobsChanged ||= Boolean(touched.job);
    jobChanged ||= Boolean(touched.job) && touched.job === jobs.selected;
    if (touched.task && touched.task === view.selected) {
      selectedChanged = true;
      detail.task = cluster.tasks.get(touched.task) ?? detail.task;
    }
  }
  if (tasksChanged) draw("tasks");
  if (selectedChanged) {
    draw("detail");
    detailChanged();
  }
  if (nodesChanged) refreshNodes();
  if (jobsChanged) refreshJobs();
  if (jobChanged) jobStoryChanged();
  draw("health"); // a heartbeat too: ages and the stream's state move with the clock
  if (events) refreshSnapshot();
}

function onStatus(state, text) {
  const status = $("stream-status");
  status.dataset.state = state;
  status.textContent = state === "live" ? "live: following the event log" : text;
  health.stream = text;
  draw("health");
}

async function main() {
  setUpTable();
  setUpDetail();
  setUpJobs();
  setUpForm();
  draw("health", "nodes");
  let after;
  for (let wait = 500; after === undefined; wait = Math.min(wait * 2, 10_000)) {
    try {
      after = await snapshot();
    } catch (error) {
      onStatus("reconnecting", `cannot reach orc (${error.message}); retrying`);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
  const open = new URLSearchParams(location.hash.slice(1));
  if (open.get("job")) selectJob(open.get("job"));
  if (open.get("task")) select(open.get("task"));
  new EventFollower({ after, onEvents, onStatus, resync: snapshot }).run();
}

main();
