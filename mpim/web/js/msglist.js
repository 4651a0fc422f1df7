// The conversation pane: renders a window of at most MAX_NODES messages, so a
// conversation with thousands of messages keeps a small DOM. Scrolling near
// the top moves the window up (or asks for older history), near the bottom
// moves it down. While the view is at the bottom, new messages stick to it.
// All user text goes in with textContent: never parsed as HTML.

const MAX_NODES = 300;
const STEP = 100;
const EDGE_PX = 120;

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  year: "numeric",
  month: "short",
  day: "numeric",
});
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

export class MessageList {
  /**
   * @param {HTMLElement} scroller the scrolling element
   * @param {{nameOf: (uid: string) => string, myUid: () => string,
   *          onNeedOlder: () => void, onRetry: (m: object) => void}} hooks
   */
  constructor(scroller, latestButton, hooks) {
    this.el = scroller;
    this.latest = latestButton;
    this.hooks = hooks;
    this.conv = null;
    this.start = 0;
    this.stick = true;
    this.atTail = true; // the last render showed the newest message
    this.frame = 0;
    this.el.addEventListener("scroll", () => this._onScroll(), { passive: true });
    this.latest.addEventListener("click", () => {
      this.stick = true;
      this.render();
    });
  }

  show(conv) {
    this.conv = conv;
    this.stick = true;
    this.start = 0;
    this.render();
  }

  /** Coalesce many changes (a SYNC page, a burst of pushes) into one render. */
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Older messages were inserted at the front: keep the window on the same ones. */
  shifted(count) {
    if (!this.stick) this.start += count;
    this.schedule();
  }

  get nodeCount() {
    return this.el.querySelectorAll(".msg").length;
  }

  render() {
    const conv = this.conv;
    this.latest.hidden = true;
    if (conv === null) {
      this.el.replaceChildren();
      return;
    }
    const items = conv.messages;
    const total = items.length;
    if (this.stick) this.start = Math.max(0, total - MAX_NODES);
    this.start = Math.min(this.start, Math.max(0, total - MAX_NODES));
    const end = Math.min(total, this.start + MAX_NODES);
    this.atTail = end === total;
    const anchor = this.stick ? null : this._anchor();

    const frag = document.createDocumentFragment();
    if (this.start === 0) frag.append(this._topNote(conv));
    let lastDay = "";
    for (let i = this.start; i < end; i++) {
      const m = items[i];
      const day = dayFmt.format(m.ts || Date.now());
      if (day !== lastDay) {
        const sep = document.createElement("div");
        sep.className = "day";
        sep.textContent = day;
        frag.append(sep);
        lastDay = day;
      }
      frag.append(this._node(m, conv));
    }
    if (end === total) {
      for (const m of conv.outbox) frag.append(this._node(m, conv));
    }
    this.el.replaceChildren(frag);

    if (this.stick) {
      this.el.scrollTop = this.el.scrollHeight;
    } else if (anchor !== null) {
      const node = this.el.querySelector(`[data-key="${CSS.escape(anchor.key)}"]`);
      if (node !== null) this.el.scrollTop = node.offsetTop - anchor.offset;
    }
    // Nothing to scroll yet, so no scroll event would ever ask for more.
    const fits = this.el.scrollHeight <= this.el.clientHeight;
    if (fits && this.start === 0 && conv.historyLoaded && !conv.historyComplete) {
      if (!conv.loadingHistory) this.hooks.onNeedOlder();
    }
    this.latest.hidden = this.stick;
  }

  _topNote(conv) {
    const note = document.createElement("div");
    note.className = "top-note";
    if (conv.historyComplete) note.textContent = "This is the beginning of the conversation.";
    else note.textContent = conv.loadingHistory ? "Loading older messages…" : "Scroll up for older messages";
    return note;
  }

  _node(m, conv) {
    const mine = m.from === this.hooks.myUid();
    const row = document.createElement("div");
    row.className = "msg" + (mine ? " mine" : "") + (m.state ? ` ${m.state}` : "");
    row.dataset.key = m.key;
    if (m.id) row.dataset.id = m.id;
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    if (conv.kind === "g" && !mine) {
      const who = document.createElement("div");
      who.className = "who";
      who.textContent = this.hooks.nameOf(m.from);
      bubble.append(who);
    }
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = m.text;
    bubble.append(text);
    const meta = document.createElement("div");
    meta.className = "meta";
    const time = document.createElement("time");
    const when = m.ts || Date.now();
    time.dateTime = new Date(when).toISOString();
    time.title = fullFmt.format(when);
    time.textContent = timeFmt.format(when);
    meta.append(time);
    if (m.state === "sending") meta.append(" · sending…");
    if (m.state === "failed") {
      const err = document.createElement("span");
      err.className = "failed-text";
      err.textContent = ` · not sent: ${m.error} `;
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "link";
      retry.textContent = "Retry";
      retry.addEventListener("click", () => this.hooks.onRetry(m));
      meta.append(err, retry);
    }
    bubble.append(meta);
    row.append(bubble);
    return row;
  }

  _anchor() {
    const top = this.el.scrollTop;
    for (const node of this.el.querySelectorAll(".msg")) {
      if (node.offsetTop + node.offsetHeight > top) {
        return { key: node.dataset.key, offset: node.offsetTop - top };
      }
    }
    return null;
  }

  _onScroll() {
    const conv = this.conv;
    if (conv === null) return;
    const el = this.el;
    const total = conv.messages.length;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < EDGE_PX;
    // Compare with what was rendered: messages that arrived since (render
    // pending) must not unstick a view that sits at the newest message.
    if (atBottom && this.atTail) {
      this.stick = true;
      this.latest.hidden = true;
      return;
    }
    this.latest.hidden = false;
    const windowEnd = Math.min(total, this.start + MAX_NODES);
    this.stick = false;
    if (atBottom && windowEnd < total) {
      this.start = Math.min(total - MAX_NODES, this.start + STEP);
      this.render();
    } else if (el.scrollTop < EDGE_PX) {
      if (this.start > 0) {
        this.start = Math.max(0, this.start - STEP);
        this.render();
      } else if (!conv.historyComplete && !conv.loadingHistory) {
        this.hooks.onNeedOlder();
      }
    }
  }
}
