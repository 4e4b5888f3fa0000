// The notify role's event stream: one EventSource, reopened by us (fresh token, last event id) whenever it drops.

import { CURSOR_FRAME, EVENT_NAMES } from "./event-names.js";

const MAX_BACKOFF_MS = 8_000;

// The event's data; tolerates an envelope such as {type, chat_id, data}.
export function unwrap(payload) {
  if (payload && typeof payload === "object" && payload.data && typeof payload.data === "object") {
    return payload.data;
  }
  return payload;
}

export class EventStream {
  // getToken(failures): a promise of a valid access token; onEvent(name, data); onState(state) with
  // state one of "connecting", "live", "reconnecting", "offline".
  constructor({ notifyUrl, getToken, onEvent, onState = () => {}, onOpen = () => {} }) {
    this.notifyUrl = notifyUrl.replace(/\/+$/, "");
    this.getToken = getToken;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onOpen = onOpen;
    this.source = null;
    this.token = null; // the access token the open source was opened with
    this.lastEventId = null;
    this.state = "offline";
    this.failures = 0;
    this.retryTimer = null;
    this.generation = 0;
    this.stopped = true;
    this.opened = false;
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.onState(state);
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    this.closeSource();
    clearTimeout(this.retryTimer);
    this.setState("offline");
  }

  // Closes the current stream and opens one with the current token, resuming where we were.
  restart() {
    if (this.stopped) return;
    this.closeSource();
    clearTimeout(this.retryTimer);
    this.open();
  }

  // The network came back: retry now rather than at the end of the backoff.
  kick() {
    if (this.stopped || this.state === "live" || this.state === "connecting") return;
    clearTimeout(this.retryTimer);
    this.open();
  }

  closeSource() {
    this.generation += 1;
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  async open() {
    const generation = ++this.generation;
    this.setState(this.failures ? "reconnecting" : "connecting");
    let token;
    try {
      token = await this.getToken(this.failures);
    } catch (error) {
      if (error && error.status === 401) return this.stop();
      return this.retryLater(generation);
    }
    if (this.stopped || generation !== this.generation) return;
    this.token = token;
    const query = new URLSearchParams({ access_token: token });
    const resumed = Boolean(this.lastEventId);
    if (resumed) query.set("last_event_id", this.lastEventId);
    const source = new EventSource(`${this.notifyUrl}/events?${query}`);
    this.source = source;

    const handle = (name) => (event) => {
      if (generation !== this.generation) return;
      if (event.lastEventId) this.lastEventId = event.lastEventId;
      let payload;
      try {
        payload = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onEvent(name, unwrap(payload));
    };
    for (const name of EVENT_NAMES) source.addEventListener(name, handle(name));
    source.addEventListener(CURSOR_FRAME, (event) => {
      if (generation === this.generation && event.lastEventId) this.lastEventId = event.lastEventId;
    });
    // Frames without an event name: the type may be inside the envelope.
    source.addEventListener("message", (event) => {
      let payload;
      try {
        payload = JSON.parse(event.data);
      } catch {
        return;
      }
      const name = payload && (payload.type || payload.event);
      if (EVENT_NAMES.includes(name)) handle(name)(event);
    });
    source.addEventListener("open", () => {
      if (generation !== this.generation) return;
      const reconnect = this.opened;
      this.opened = true;
      this.failures = 0;
      this.setState("live");
      this.onOpen({ reconnect, resumed });
    });
    // The browser's own retry would reuse the URL, so an expired token or a stale
    // last_event_id; we close and reopen with fresh ones instead.
    source.addEventListener("error", () => {
      if (generation !== this.generation) return;
      this.closeSource();
      this.retryLater(this.generation);
    });
  }

  retryLater(generation) {
    if (this.stopped || generation !== this.generation) return;
    this.failures += 1;
    this.setState("reconnecting");
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.failures - 1, 5));
    const delay = base / 2 + Math.random() * (base / 2);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }
}
