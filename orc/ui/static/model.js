// The page's copy of the tasks, kept current by the events of `GET /events`.
//
// It starts from `GET /tasks` and folds each event in as orc/core/state.py's `apply` does, for
// the fields the page shows. Following the stream costs no request per change, which is what
// keeps a busy cluster from turning the page into a polling storm. The task a person opens is
// read again from the manager (`GET /tasks/{id}`), so what the detail shows is orc's own word.

export const STATE_NAMES = new Map([
  [0, "Pending"],
  [1, "Scheduled"],
  [2, "Running"],
  [3, "Completed"],
  [-1, "Failed"],
]);
const PENDING = 0;
const SCHEDULED = 1;
const RUNNING = 2;
const COMPLETED = 3;
const FAILED = -1;

export const ENDED = new Set([COMPLETED, FAILED]);

// The events of jobs (orc/core/events.py's JOB_EVENTS): they change a job's record, never a
// task's, in `apply`.
export const JOB_EVENTS = new Set(["JobRegistered", "JobScaled", "JobStopped", "JobDecided"]);

// Events that change where a node's capacity goes (GET /nodes counts Scheduled and Running).
const MOVES_CAPACITY = new Set([
  "TaskScheduled",
  "TaskStarted",
  "TaskExited",
  "TaskStopRequested",
  "TaskFailed",
  "TaskRestarting",
  "TaskRestarted",
  "TaskPurged",
]);

// As orc.core.restarts.fmt_seconds writes a backoff (Python's `:g`).
function fmtSeconds(seconds) {
  const g = (n) => String(Number(n.toPrecision(6)));
  if (seconds < 60) return `${g(seconds)}s`;
  if (seconds < 3600) return `${g(seconds / 60)}min`;
  return `${g(seconds / 3600)}h`;
}

export class Cluster {
  constructor() {
    this.tasks = new Map();
    // Tasks waiting out a restart backoff (state.py's `restarts[id].waiting`): the end of
    // the run being replaced is only recorded for them.
    this.waiting = new Set();
  }

  load(tasks) {
    this.tasks = new Map(tasks.map((t) => [t.ID, t]));
    this.waiting.clear();
  }

  put(task) {
    this.tasks.set(task.ID, task);
  }

  // Folds one event in; tells what it touched: {task: id or "", nodes: whether GET /nodes
  // would now answer differently, job: the ID of the job whose view (GET /jobs) it may change,
  // or ""}.
  apply(event) {
    if (JOB_EVENTS.has(event.Type)) {
      // A job's own events change no task here: what they decide comes as task events (a
      // JobDecided names a task, but only says why). The page reads the jobs' views again.
      return { task: "", nodes: false, job: event.JobID ?? event.Job?.ID ?? "" };
    }
    const id = event.TaskID ?? event.Task?.ID ?? "";
    const touched = {
      task: id,
      nodes: event.Type.startsWith("Node") || MOVES_CAPACITY.has(event.Type),
      job: "",
    };
    if (event.Type === "TaskSubmitted") {
      this.tasks.set(id, { ...event.Task, StateName: STATE_NAMES.get(event.Task.State) });
      touched.job = event.Task.JobID ?? "";
      return touched;
    }
    const task = this.tasks.get(id);
    if (!task) return touched; // a node event, or a task this page never saw (already purged)
    touched.job = task.JobID ?? "";
    const change = this.#change(event, task);
    if (change === null) this.tasks.delete(id);
    else if (change) {
      const next = { ...task, ...change };
      next.StateName = STATE_NAMES.get(next.State);
      this.tasks.set(id, next);
    }
    return touched;
  }

  // The fields `event` changes on `task`: an object, `undefined` for none, null to forget it.
  #change(e, task) {
    const at = e.At;
    switch (e.Type) {
      case "TaskUnplaced":
        return { Error: e.Reason, UpdatedAt: at };
      case "TaskScheduled":
        return { State: SCHEDULED, Node: e.Node, Error: "", UpdatedAt: at };
      case "TaskStarted":
        return {
          State: RUNNING,
          StartsAt: at,
          ContainerID: e.ContainerID ?? "",
          HostPorts: e.HostPorts ?? null,
          UpdatedAt: at,
        };
      case "TaskExited": {
        if (this.waiting.has(task.ID)) return { FinishedAt: at, ExitCode: e.ExitCode };
        const ok = e.Stopped || e.ExitCode === 0;
        return {
          State: ok ? COMPLETED : FAILED,
          FinishedAt: at,
          ExitCode: e.ExitCode,
          Error: e.Error ?? "",
          UpdatedAt: at,
          Stopping: false,
        };
      }
      case "TaskStopRequested":
        if (task.State === PENDING) {
          const Error = "stopped before it was placed";
          return { State: FAILED, FinishedAt: at, Error, UpdatedAt: at };
        }
        if (this.waiting.delete(task.ID)) {
          const Error = "stopped while waiting to restart";
          return { State: COMPLETED, FinishedAt: at, Error, UpdatedAt: at };
        }
        return { Stopping: true }; // the page's own mark: it ends when its process does
      case "TaskFailed":
        if (this.waiting.has(task.ID)) return undefined;
        return { State: FAILED, FinishedAt: at, Error: e.Error, UpdatedAt: at, Stopping: false };
      case "TaskRestarting":
        this.waiting.add(task.ID);
        return {
          State: SCHEDULED,
          Node: e.Node,
          RestartCount: e.RestartCount,
          ExitCode: e.ExitCode ?? null,
          FinishedAt: at,
          Error: `${e.Reason}; restart ${e.RestartCount} in ${fmtSeconds(e.Delay)}`,
          UpdatedAt: at,
        };
      case "TaskRestarted":
        this.waiting.delete(task.ID);
        return {
          Node: e.Node,
          Error: "",
          StartsAt: null,
          ContainerID: "",
          HostPorts: null,
          UpdatedAt: at,
        };
      case "TaskUnhealthy":
        return { Error: e.Reason, UpdatedAt: at };
      case "TaskPurged":
        this.waiting.delete(task.ID);
        return null;
      default:
        return undefined; // TaskLost records a worker's update; its effect is the next event
    }
  }
}
