// Following `GET /events`: the manager's NDJSON stream, read with fetch and a ReadableStream
// (EventSource cannot send the Authorization header). One connection for the whole page; when
// it drops, it comes back after a growing pause and resumes with `after=` the last Seq seen, so
// nothing is missed and nothing is applied twice.

import { request } from "./api.js";

const SILENCE_MS = 16_000; // the manager sends a heartbeat every 5 s: three missed means gone
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class EventFollower {
  // `onEvents(lines)`: a batch of parsed lines ({Seq, Event} or {Heartbeat, Seq}), in order.
  // `onStatus(state, text)`: "live", "reconnecting". `resync()`: called when `after` no longer
  // fits the log (compacted away, or a new log); it reloads the page's state and returns the
  // Seq to follow from.
  constructor({ after, onEvents, onStatus, resync }) {
    this.seq = after;
    this.onEvents = onEvents;
    this.onStatus = onStatus;
    this.resync = resync;
  }

  async run() {
    let retry = FIRST_RETRY_MS;
    for (;;) {
      let why = "";
      try {
        const response = await request("GET", `events?after=${this.seq}`, { raw: true });
        if (response.status === 410 || response.status === 400) {
          // 410: the events after our Seq were compacted; 400: the log is shorter than our
          // Seq (a manager with a new data directory). Either way: start again from a snapshot.
          this.seq = await this.resync();
          continue;
        }
        if (response.status === 503) {
          // The manager's stream limit: it says when to come back.
          why = "the manager has too many event streams open";
          const wait = Number(response.headers.get("Retry-After")) || 5;
          retry = Math.max(retry, wait * 1000);
        } else if (!response.ok) {
          why = `the event stream answered ${response.status}`;
        } else {
          this.onStatus("live", "live");
          retry = FIRST_RETRY_MS;
          why = await this.#read(response.body);
        }
      } catch (error) {
        why = error.message || String(error);
      }
      this.onStatus("reconnecting", `reconnecting (${why})`);
      await sleep(retry);
      retry = Math.min(retry * 2, MAX_RETRY_MS);
    }
  }

  // Reads lines until the stream ends; returns why it ended.
  async #read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let timer = 0;
    let silent = false;
    const watch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        silent = true;
        reader.cancel(); // ends the pending read, and the connection with it
      }, SILENCE_MS);
    };
    try {
      for (;;) {
        watch();
        const { value, done } = await reader.read();
        if (done) return silent ? "no heartbeat from the manager" : "the stream ended";
        buffer += value;
        const lines = buffer.split("\n");
        buffer = lines.pop(); // a partial line waits for the rest
        const batch = [];
        for (const line of lines) {
          if (!line) continue;
          const parsed = JSON.parse(line);
          batch.push(parsed);
          if (parsed.Event) this.seq = parsed.Seq;
        }
        if (batch.length) this.onEvents(batch);
      }
    } finally {
      clearTimeout(timer);
    }
  }
}
