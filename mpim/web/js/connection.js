// One MPIM connection over WebSocket, with automatic reconnects.
//
// The protocol answers every command with exactly one reply line, in command
// order, except PULL/SYNC/HISTORY, whose message lines come before their
// single "+OK …_done". So the client keeps a FIFO of commands waiting for a
// reply: a line starting with "+" or "-" answers the oldest one; any other
// line is a message, which belongs to the oldest command if that is a
// multi-line command, and is a live push otherwise. (A push that arrives just
// before a SYNC/HISTORY reply is indistinguishable from its first line; the
// app handles such lines by seq and id, so nothing is lost or doubled.)

import { ConnectionLost, ReplyError, checkLine } from "./protocol.js";

const COMMAND_TIMEOUT_MS = 20000;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];

export class MpimConnection extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.greeted = false;
    this.pending = [];
    this.attempt = 0;
    this.stopped = true;
    this.retryTimer = null;
  }

  get isOpen() {
    return this.ws !== null && this.greeted && this.ws.readyState === WebSocket.OPEN;
  }

  /** Connect now and keep reconnecting after drops until stop(). */
  start() {
    this.stopped = false;
    if (this.ws === null && this.retryTimer === null) this._open();
  }

  /** Close for good (logout): no reconnect. */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws !== null) this.ws.close(1000);
    this._dropped(this.ws);
  }

  /** Drop the socket (e.g. a stalled reply) and reconnect. */
  reconnect() {
    if (this.ws !== null) this.ws.close(4000, "client reconnect");
    this._dropped(this.ws);
  }

  /**
   * Send one command; resolves with {reply, lines} on "+OK…", rejects with a
   * ReplyError on "-ERR…" and with ConnectionLost if the socket drops first.
   * `multi` marks PULL/SYNC/HISTORY, whose message lines are collected.
   */
  command(line, multi = false) {
    checkLine(line);
    if (!this.isOpen) return Promise.reject(new ConnectionLost());
    return new Promise((resolve, reject) => {
      const entry = { line, multi, lines: [], resolve, reject, timer: null };
      entry.timer = setTimeout(() => {
        console.warn("mpim: no reply to %s; reconnecting", line.split(" ")[0]);
        this.reconnect();
      }, COMMAND_TIMEOUT_MS);
      this.pending.push(entry);
      this.ws.send(line);
    });
  }

  _open() {
    this.retryTimer = null;
    this.greeted = false;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      console.error("mpim: cannot open websocket", err);
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    this._emit("connecting", { attempt: this.attempt });
    ws.onmessage = (ev) => {
      if (ws === this.ws && typeof ev.data === "string") this._onLine(ev.data);
    };
    ws.onclose = () => this._dropped(ws);
    ws.onerror = () => {}; // a close event always follows
  }

  _onLine(line) {
    if (!this.greeted) {
      if (line.startsWith("+OK")) {
        this.greeted = true;
        this.attempt = 0;
        this._emit("open", { greeting: line });
      } else {
        this.reconnect();
      }
      return;
    }
    const first = line.charAt(0);
    if (first === "+" || first === "-") {
      const head = this.pending.shift();
      if (head === undefined) {
        // Not an answer to anything: the shutdown notice, for instance.
        this._emit("notice", { line });
        return;
      }
      clearTimeout(head.timer);
      if (first === "+") head.resolve({ reply: line, lines: head.lines });
      else head.reject(new ReplyError(line.replace(/^-ERR\s?/, ""), head.line));
      return;
    }
    const head = this.pending[0];
    if (head !== undefined && head.multi) head.lines.push(line);
    else this._emit("push", { line });
  }

  _dropped(ws) {
    if (ws === null || ws !== this.ws) return;
    this.ws = null;
    this.greeted = false;
    const pending = this.pending;
    this.pending = [];
    for (const entry of pending) {
      clearTimeout(entry.timer);
      entry.reject(new ConnectionLost());
    }
    this._emit("down", { stopped: this.stopped });
    if (!this.stopped) this._scheduleRetry();
  }

  _scheduleRetry() {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = base + Math.floor(Math.random() * base * 0.3);
    this.attempt += 1;
    this._emit("retry", { delay, attempt: this.attempt });
    this.retryTimer = setTimeout(() => this._open(), delay);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
