// The MPIM web client: login, contacts and groups, conversations.
//
// Delivery model (protocol.md): live pushes arrive as MSG/GMSG lines; after a
// reconnect or reload the client runs SYNC from the last seq it has fully
// seen (kept in localStorage), so nothing is missed; messages are keyed by
// their id, so nothing shows twice. Own sends carry a client id (@cid=), so a
// send retried after a drop is stored once. The token is kept in localStorage
// and a reload resumes with AUTH.

import { MpimConnection } from "./connection.js";
import { MessageList } from "./msglist.js";
import {
  ConnectionLost,
  ReplyError,
  SeqTracker,
  compareIds,
  conversationKey,
  newCid,
  parseFields,
  parseIdList,
  parseMessageLine,
} from "./protocol.js";

const HISTORY_PAGE = 50;
const FIRST_SYNC_WINDOW = 200; // a new device fetches this many recent messages
const POLL_MS = 3000; // friends, groups and presence
const MAX_SEQ = "9223372036854775807";
const SESSION_KEY = "mpim:session";
const stateKey = (uid) => `mpim:state:${uid}`;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- state ---

class Conversation {
  constructor(key) {
    this.key = key;
    this.kind = key[0]; // "u" or "g"
    this.id = key.slice(1);
    this.messages = []; // ascending by id
    this.byId = new Map();
    this.outbox = []; // own messages waiting for +OK
    this.unread = 0;
    this.lastTs = 0;
    this.lastText = "";
    this.historyLoaded = false;
    this.historyComplete = false;
    this.loadingHistory = false;
  }

  /** Insert by id; returns false if already present. */
  add(m) {
    if (this.byId.has(m.id)) return false;
    const item = { key: m.id, id: m.id, big: BigInt(m.id), from: m.from, ts: m.ts, seq: m.seq, text: m.text };
    const arr = this.messages;
    if (arr.length === 0 || arr[arr.length - 1].big < item.big) {
      arr.push(item);
    } else {
      let lo = 0;
      let hi = arr.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (arr[mid].big < item.big) lo = mid + 1;
        else hi = mid;
      }
      arr.splice(lo, 0, item);
    }
    this.byId.set(m.id, item);
    if (m.ts >= this.lastTs) {
      this.lastTs = m.ts;
      this.lastText = m.text;
    }
    return true;
  }
}

const app = {
  conn: null,
  session: null, // {uid, token, username}
  ready: false, // logged in on the current connection
  convs: new Map(),
  friends: new Set(),
  groups: new Set(),
  online: new Map(),
  names: {}, // conversation key -> local name
  tracker: new SeqTracker(0),
  firstSync: true,
  active: null,
  syncing: null,
  syncAgain: false,
  pollTimer: null,
  list: null,
};

function conv(key, create = true) {
  let c = app.convs.get(key);
  if (c === undefined && create) {
    c = new Conversation(key);
    app.convs.set(key, c);
  }
  return c;
}

function nameOf(uid) {
  if (app.session && uid === app.session.uid) return app.session.username || "You";
  return app.names[`u${uid}`] || `User ${uid}`;
}

function convName(c) {
  if (c.kind === "u") return nameOf(c.id);
  return app.names[c.key] || `Group ${c.id}`;
}

// ---------------------------------------------------------- persistence ---

function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
    if (s && typeof s.token === "string" && typeof s.uid === "string") return s;
  } catch (err) {
    console.warn("mpim: ignoring bad saved session", err);
  }
  return null;
}

function loadState(uid) {
  let s = null;
  try {
    s = JSON.parse(localStorage.getItem(stateKey(uid)) || "null");
  } catch (err) {
    console.warn("mpim: ignoring bad saved state", err);
  }
  app.convs.clear();
  app.names = (s && s.names) || {};
  app.firstSync = !(s && Number.isInteger(s.lastSeq));
  app.tracker = new SeqTracker(app.firstSync ? 0 : s.lastSeq);
  app.active = (s && s.active) || null;
  for (const [key, info] of Object.entries((s && s.convs) || {})) {
    if (!/^[ug][0-9]+$/.test(key)) continue;
    const c = conv(key);
    c.unread = info.unread | 0;
    c.lastTs = info.lastTs || 0;
    c.lastText = info.lastText || "";
  }
  for (const o of (s && s.outbox) || []) {
    if (/^[ug][0-9]+$/.test(o.conv)) {
      conv(o.conv).outbox.push({ key: `p:${o.cid}`, cid: o.cid, from: uid, ts: o.ts, text: o.text, state: "sending" });
    }
  }
}

let saveQueued = false;
function saveState() {
  if (saveQueued || !app.session) return;
  saveQueued = true;
  queueMicrotask(() => {
    saveQueued = false;
    if (!app.session) return;
    const convs = {};
    const outbox = [];
    for (const c of app.convs.values()) {
      convs[c.key] = { unread: c.unread, lastTs: c.lastTs, lastText: c.lastText.slice(0, 200) };
      for (const o of c.outbox) outbox.push({ conv: c.key, cid: o.cid, ts: o.ts, text: o.text });
    }
    const state = {
      lastSeq: app.firstSync ? null : app.tracker.floor,
      active: app.active,
      names: app.names,
      convs,
      outbox,
    };
    try {
      localStorage.setItem(stateKey(app.session.uid), JSON.stringify(state));
    } catch (err) {
      console.warn("mpim: could not save state", err);
    }
  });
}

// -------------------------------------------------------------- helpers ---

function toast(text, kind = "error") {
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.textContent = text;
  $("toasts").append(el);
  setTimeout(() => el.remove(), 6000);
}

function errorMessage(err) {
  if (err instanceof ReplyError || err instanceof ConnectionLost) return err.message;
  return err && err.message ? err.message : String(err);
}

/** Run a command; show any failure as a toast; resolve null on failure. */
async function run(line, multi = false) {
  try {
    return await app.conn.command(line, multi);
  } catch (err) {
    toast(errorMessage(err));
    return null;
  }
}

let renderQueued = false;
function renderSoon() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderSidebar();
    renderHeader();
  });
}

// ----------------------------------------------------------- connection ---

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function setConnState(text, up) {
  const el = $("conn-state");
  el.textContent = text;
  el.classList.toggle("up", up);
  el.classList.toggle("down", !up);
  $("login-status").textContent = up ? "" : text;
}

function setupConnection() {
  const c = new MpimConnection(wsUrl());
  app.conn = c;
  c.addEventListener("open", () => {
    setConnState("online", true);
    $("banner").hidden = true;
    if (app.session) resume();
  });
  c.addEventListener("down", (ev) => {
    app.ready = false;
    stopPolling();
    if (ev.detail.stopped) return;
    setConnState("reconnecting…", false);
    if (app.session) {
      const banner = $("banner");
      banner.textContent = "Connection lost. Reconnecting…";
      banner.hidden = false;
    }
  });
  c.addEventListener("retry", (ev) => {
    if (ev.detail.attempt > 1) setConnState(`reconnecting in ${Math.ceil(ev.detail.delay / 1000)} s…`, false);
  });
  c.addEventListener("push", (ev) => onPush(ev.detail.line));
  c.addEventListener("notice", (ev) => {
    const line = ev.detail.line;
    if (line.startsWith("-ERR")) toast(new ReplyError(line.slice(5)).message);
  });
  c.start();
}

/** AUTH with the saved token after (re)connecting, then catch up. */
async function resume() {
  try {
    const { reply } = await app.conn.command(`AUTH ${app.session.token}`);
    const uid = parseFields(reply).uid;
    if (uid !== app.session.uid) throw new ReplyError("auth failed");
  } catch (err) {
    if (err instanceof ReplyError && (err.code === "auth failed" || err.code === "bad token")) {
      logout("Your session has expired. Please log in again.");
    } else if (err instanceof ReplyError) {
      // Busy or restarting (service unavailable, rate limited…): try again.
      toast(err.message);
      app.conn.reconnect();
    }
    return; // ConnectionLost: the next "open" tries again
  }
  await onLoggedIn();
}

async function onLoggedIn() {
  app.ready = true;
  $("banner").hidden = true;
  try {
    await catchUp();
    await refreshLists();
  } catch (err) {
    if (!(err instanceof ConnectionLost)) toast(errorMessage(err));
  }
  flushOutbox();
  for (const c of app.convs.values()) c.historyLoaded = false;
  if (app.active) openConversation(app.active, { keepUnread: false });
  startPolling();
}

// ------------------------------------------------------------- messages ---

/** Store one message line; returns true if it was new to this device. */
function ingest(m, { live, countUnread = true, key = null }) {
  const me = app.session.uid;
  const k = key || conversationKey(m);
  const c = conv(k);
  const newSeq = m.seq > 0 && m.from !== me ? app.tracker.observe(m.seq) : false;
  const added = c.add(m);
  if (added && live && m.from !== me) app.online.set(m.from, true);
  if (added && newSeq && countUnread && m.from !== me && !isVisible(k)) c.unread += 1;
  if (added && k === app.active) app.list.schedule();
  if (added || newSeq) {
    saveState();
    renderSoon();
  }
  return added;
}

function isVisible(key) {
  return key === app.active && document.visibilityState === "visible";
}

function onPush(line) {
  const m = parseMessageLine(line);
  if (m === null || !app.ready) return;
  ingest(m, { live: true });
  if (app.tracker.hasGap) catchUp();
}

/**
 * SYNC from the highest seq seen without gaps, page by page. One at a time;
 * a request while one runs makes it run again afterwards.
 */
function catchUp() {
  if (app.syncing) {
    app.syncAgain = true;
    return app.syncing;
  }
  app.syncing = (async () => {
    try {
      do {
        app.syncAgain = false;
        await syncOnce();
      } while (app.syncAgain);
    } catch (err) {
      // A drop is retried by the next login's catch-up; anything else is shown.
      if (!(err instanceof ConnectionLost)) toast(errorMessage(err));
    } finally {
      app.syncing = null;
    }
  })();
  return app.syncing;
}

async function syncOnce() {
  let after = app.tracker.floor;
  let countUnread = true;
  if (app.firstSync) {
    // A new device: learn the current seq, then fetch only recent messages.
    const head = await app.conn.command(`SYNC ${MAX_SEQ}`, true);
    const top = Number(parseFields(head.reply).seq || 0);
    after = Math.max(0, top - FIRST_SYNC_WINDOW);
    countUnread = false;
  }
  for (;;) {
    const { lines, reply } = await app.conn.command(`SYNC ${after}`, true);
    for (const line of lines) {
      const m = parseMessageLine(line);
      if (m !== null) ingest(m, { live: false, countUnread });
    }
    const done = parseFields(reply);
    const seq = Number(done.seq || 0);
    if (done.more === "1" && seq > after) {
      after = seq;
      continue;
    }
    app.tracker.syncedTo(seq);
    app.firstSync = false;
    saveState();
    renderSoon();
    return;
  }
}

function historyTarget(c) {
  return c.kind === "u" ? c.id : `g${c.id}`;
}

/** Does a HISTORY line belong to the conversation asked for? */
function belongs(c, m) {
  if (c.kind === "g") return m.group === c.id;
  return !m.group && (m.from === c.id || m.from === app.session.uid);
}

async function loadHistory(c, older) {
  if (c.loadingHistory || !app.ready) return;
  const before = older && c.messages.length ? ` ${c.messages[0].id}` : "";
  c.loadingHistory = true;
  if (c.key === app.active) app.list.schedule();
  try {
    const { lines } = await app.conn.command(`HISTORY ${historyTarget(c)} ${HISTORY_PAGE}${before}`, true);
    let added = 0;
    let own = 0;
    for (const line of lines) {
      const m = parseMessageLine(line);
      if (m === null) continue;
      if (belongs(c, m)) {
        own += 1;
        if (ingest(m, { live: false, key: c.key })) added += 1;
      } else {
        ingest(m, { live: true }); // a push that arrived just before the reply
      }
    }
    c.historyLoaded = true;
    if (own < HISTORY_PAGE) c.historyComplete = true;
    if (older && c.key === app.active) app.list.shifted(added);
  } catch (err) {
    if (!(err instanceof ConnectionLost)) toast(errorMessage(err));
  } finally {
    c.loadingHistory = false;
    if (c.key === app.active) app.list.schedule();
  }
}

function send(text) {
  const c = app.active && conv(app.active);
  if (!c || !text.trim()) return;
  const cid = newCid();
  const item = { key: `p:${cid}`, cid, from: app.session.uid, ts: Date.now(), text, state: "sending" };
  c.outbox.push(item);
  c.lastTs = item.ts;
  c.lastText = text;
  saveState();
  app.list.schedule();
  renderSoon();
  deliver(c, item);
}

async function deliver(c, item) {
  if (!app.ready) return; // flushOutbox() sends it after the next login
  item.state = "sending";
  const verb = c.kind === "u" ? "SEND" : "SENDGROUP";
  try {
    const { reply } = await app.conn.command(`@cid=${item.cid} ${verb} ${c.id} ${item.text}`);
    const f = parseFields(reply);
    const id = f.msg_id || f.group_msg_id;
    c.outbox = c.outbox.filter((o) => o !== item);
    c.add({ id, from: item.from, ts: item.ts, seq: 0, text: item.text });
  } catch (err) {
    if (err instanceof ConnectionLost) return; // stays queued; retried with the same cid
    item.state = "failed";
    item.error = errorMessage(err);
    toast(item.error);
  }
  saveState();
  if (c.key === app.active) app.list.schedule();
  renderSoon();
}

function flushOutbox() {
  for (const c of app.convs.values()) {
    for (const item of c.outbox) if (item.state === "sending") deliver(c, item);
  }
}

// ---------------------------------------------------- friends and groups ---

async function refreshLists() {
  const [f, g] = await Promise.all([app.conn.command("GETFRIENDS"), app.conn.command("GROUPS")]);
  app.friends = new Set(parseIdList(f.reply));
  app.groups = new Set(parseIdList(g.reply));
  for (const uid of app.friends) conv(`u${uid}`);
  for (const gid of app.groups) conv(`g${gid}`);
  await refreshPresence();
  renderSoon();
}

async function refreshPresence() {
  const uids = [...app.convs.values()].filter((c) => c.kind === "u").map((c) => c.id).slice(0, 200);
  const replies = await Promise.allSettled(uids.map((uid) => app.conn.command(`STATUS ${uid}`)));
  replies.forEach((r, i) => {
    if (r.status === "fulfilled") app.online.set(uids[i], parseFields(r.value.reply).online === "1");
  });
  renderSoon();
}

function startPolling() {
  stopPolling();
  app.pollTimer = setInterval(() => {
    if (!app.ready) return;
    refreshLists().catch((err) => {
      if (!(err instanceof ConnectionLost)) console.warn("mpim: refresh failed", err);
    });
  }, POLL_MS);
}

function stopPolling() {
  clearInterval(app.pollTimer);
  app.pollTimer = null;
}

// ------------------------------------------------------------------- UI ---

function renderSidebar() {
  if (!app.session) return;
  const contacts = [];
  const groups = [];
  for (const c of app.convs.values()) {
    if (c.kind === "u" && (app.friends.has(c.id) || c.messages.length || c.lastTs || c.key === app.active)) contacts.push(c);
    if (c.kind === "g" && app.groups.has(c.id)) groups.push(c);
  }
  const order = (a, b) => b.lastTs - a.lastTs || convName(a).localeCompare(convName(b));
  contacts.sort(order);
  groups.sort(order);
  $("contact-list").replaceChildren(...contacts.map(convItem));
  $("group-list").replaceChildren(...groups.map(convItem));
  $("contacts-empty").hidden = contacts.length > 0;
  $("groups-empty").hidden = groups.length > 0;
  let unread = 0;
  for (const c of app.convs.values()) unread += c.unread;
  document.title = unread ? `(${unread}) MPIM` : "MPIM";
}

function convItem(c) {
  const li = document.createElement("li");
  li.className = "conv-item" + (c.key === app.active ? " active" : "");
  li.dataset.conv = c.key;
  li.tabIndex = 0;
  if (c.kind === "u") {
    const dot = document.createElement("span");
    const on = app.online.get(c.id);
    dot.className = "dot" + (on ? " online" : "");
    dot.title = on ? "online" : "offline";
    li.append(dot);
  } else {
    const hash = document.createElement("span");
    hash.className = "hash";
    hash.textContent = "#";
    li.append(hash);
  }
  const body = document.createElement("div");
  body.className = "body";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = convName(c);
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = `#${c.id}`;
  name.append(id);
  const preview = document.createElement("div");
  preview.className = "preview";
  preview.textContent = c.lastText || (c.kind === "u" && !app.friends.has(c.id) ? "not a friend" : "");
  body.append(name, preview);
  li.append(body);
  if (c.unread > 0) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = c.unread > 999 ? "999+" : String(c.unread);
    li.append(badge);
  }
  li.addEventListener("click", () => openConversation(c.key));
  li.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") openConversation(c.key);
  });
  return li;
}

function renderHeader() {
  const c = app.active && conv(app.active, false);
  $("conv-header").hidden = !c;
  $("composer").hidden = !c;
  $("placeholder").hidden = !!c;
  if (!c) return;
  $("conv-name").textContent = convName(c);
  const dot = $("conv-dot");
  if (c.kind === "u") {
    const on = app.online.get(c.id);
    dot.className = "dot" + (on ? " online" : "");
    const friend = app.friends.has(c.id);
    $("conv-sub").textContent = `${on ? "online" : "offline"} · user #${c.id}${friend ? "" : " · not a friend"}`;
    $("conv-befriend").hidden = friend;
    $("conv-unfriend").hidden = !friend;
    $("conv-members").hidden = true;
    $("conv-leave").hidden = true;
  } else {
    dot.className = "dot none";
    $("conv-sub").textContent = `group #${c.id}`;
    $("conv-befriend").hidden = true;
    $("conv-unfriend").hidden = true;
    $("conv-members").hidden = false;
    $("conv-leave").hidden = !app.groups.has(c.id);
  }
}

function openConversation(key, { keepUnread = false } = {}) {
  const c = conv(key);
  app.active = key;
  if (!keepUnread && document.visibilityState === "visible") c.unread = 0;
  app.list.show(c);
  if (!c.historyLoaded) loadHistory(c, false);
  saveState();
  renderSoon();
  $("composer-input").focus();
}

function closeConversation() {
  app.active = null;
  app.list.show(null);
  saveState();
  renderSoon();
}

function showLogin(message = "") {
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message;
  $("login-username").focus();
}

function showChat() {
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  $("me-name").textContent = app.session.username || `User ${app.session.uid}`;
  $("me-uid").textContent = app.session.uid;
  $("me-avatar").textContent = (app.session.username || "?").charAt(0).toUpperCase();
  renderSoon();
}

async function login(kind) {
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  const err = $("login-error");
  err.textContent = "";
  if (!username || !password) {
    err.textContent = "Enter a username and a password.";
    return;
  }
  if (/\s/.test(username) || /\s/.test(password)) {
    err.textContent = "Usernames and passwords cannot contain spaces.";
    return;
  }
  if (!app.conn.isOpen) {
    err.textContent = "Not connected to the server yet; retrying…";
    return;
  }
  const buttons = document.querySelectorAll("#login-form button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    const verb = kind === "register" ? "REGISTER" : "LOGIN";
    const { reply } = await app.conn.command(`${verb} ${username} ${password}`);
    const f = parseFields(reply);
    app.session = { uid: f.uid, token: f.token, username };
    localStorage.setItem(SESSION_KEY, JSON.stringify(app.session));
    $("login-password").value = "";
    loadState(app.session.uid);
    showChat();
    await onLoggedIn();
  } catch (e) {
    err.textContent = errorMessage(e);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

function logout(message = "") {
  const wasReady = app.ready;
  if (app.session) localStorage.removeItem(stateKey(app.session.uid));
  localStorage.removeItem(SESSION_KEY);
  app.session = null;
  app.ready = false;
  stopPolling();
  app.convs.clear();
  app.friends.clear();
  app.groups.clear();
  app.active = null;
  app.list.show(null);
  if (wasReady) {
    // Revoke the token; the connection stays open, logged out, for the next login.
    app.conn.command("LOGOUT").catch((err) => console.warn("mpim: logout failed", err));
  }
  showLogin(message);
}

// -------------------------------------------------------------- dialogs ---

function openDialog(id, values = {}) {
  const dlg = $(id);
  const form = dlg.querySelector("form");
  form.reset();
  for (const [k, v] of Object.entries(values)) form.elements[k].value = v;
  form.querySelector(".error").textContent = "";
  dlg.showModal();
}

/** Dialog forms: the action runs on submit; the dialog stays open on error. */
function wireDialog(id, action) {
  const dlg = $(id);
  const form = dlg.querySelector("form");
  form.addEventListener("submit", async (ev) => {
    if (ev.submitter && ev.submitter.value === "cancel") return;
    ev.preventDefault();
    const err = form.querySelector(".error");
    err.textContent = "";
    try {
      await action(Object.fromEntries(new FormData(form)));
      dlg.close();
    } catch (e) {
      err.textContent = errorMessage(e);
    }
  });
}

function setName(key, name) {
  const clean = (name || "").trim().slice(0, 64);
  if (clean) app.names[key] = clean;
  else delete app.names[key];
  saveState();
  renderSoon();
}

function wireDialogs() {
  wireDialog("dlg-friend", async ({ uid, name }) => {
    uid = uid.trim();
    await app.conn.command(`ADDFRIEND ${uid}`);
    if (name) setName(`u${uid}`, name);
    app.friends.add(uid);
    openConversation(`u${uid}`);
    toast("Friend added.", "info");
    refreshLists().catch(() => {});
  });
  wireDialog("dlg-create", async ({ name, desc }) => {
    const { reply } = await app.conn.command(`CREATEGROUP ${name.trim()}${desc.trim() ? " " + desc.trim() : ""}`);
    const gid = parseFields(reply).group_id;
    setName(`g${gid}`, name.trim());
    app.groups.add(gid);
    openConversation(`g${gid}`);
    toast(`Group created. Its ID is ${gid}: share it so others can join.`, "info");
  });
  wireDialog("dlg-join", async ({ gid, name }) => {
    gid = gid.trim();
    await app.conn.command(`JOINGROUP ${gid}`);
    if (name) setName(`g${gid}`, name);
    app.groups.add(gid);
    openConversation(`g${gid}`);
  });
  wireDialog("dlg-rename", async ({ name }) => {
    if (app.active) setName(app.active, name);
  });
}

async function showMembers() {
  const c = app.active && conv(app.active);
  if (!c || c.kind !== "g") return;
  $("members-title").textContent = `Members of ${convName(c)}`;
  const list = $("members-list");
  list.replaceChildren();
  openDialog("dlg-members");
  const res = await run(`MEMBERS ${c.id}`);
  if (res === null) return;
  const uids = parseIdList(res.reply);
  const states = await Promise.allSettled(uids.map((u) => app.conn.command(`STATUS ${u}`)));
  list.replaceChildren(
    ...uids.map((uid, i) => {
      const li = document.createElement("li");
      const dot = document.createElement("span");
      const on = states[i].status === "fulfilled" && parseFields(states[i].value.reply).online === "1";
      dot.className = "dot" + (on ? " online" : "");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = `${nameOf(uid)}  #${uid}`;
      li.append(dot, name);
      if (uid !== app.session.uid) {
        const chat = document.createElement("button");
        chat.type = "button";
        chat.textContent = "Message";
        chat.addEventListener("click", () => {
          $("dlg-members").close();
          openConversation(`u${uid}`);
        });
        li.append(chat);
      }
      return li;
    }),
  );
}

function wireChat() {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    login(ev.submitter && ev.submitter.value === "register" ? "register" : "login");
  });
  $("logout").addEventListener("click", () => logout());
  $("add-friend").addEventListener("click", () => openDialog("dlg-friend"));
  $("create-group").addEventListener("click", () => openDialog("dlg-create"));
  $("join-group").addEventListener("click", () => openDialog("dlg-join"));
  $("conv-rename").addEventListener("click", () => {
    const c = app.active && conv(app.active);
    if (c) openDialog("dlg-rename", { name: app.names[c.key] || "" });
  });
  $("conv-members").addEventListener("click", () => showMembers());
  $("conv-befriend").addEventListener("click", async () => {
    const c = conv(app.active);
    if (await run(`ADDFRIEND ${c.id}`)) {
      app.friends.add(c.id);
      renderSoon();
    }
  });
  $("conv-unfriend").addEventListener("click", async () => {
    const c = conv(app.active);
    if (!confirm(`Remove ${convName(c)} from your friends?`)) return;
    if (await run(`REMOVEFRIEND ${c.id}`)) {
      app.friends.delete(c.id);
      renderSoon();
    }
  });
  $("conv-leave").addEventListener("click", async () => {
    const c = conv(app.active);
    if (!confirm(`Leave ${convName(c)}?`)) return;
    if (await run(`LEAVEGROUP ${c.id}`)) {
      app.groups.delete(c.id);
      closeConversation();
    }
  });
  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("composer-input");
    const text = input.value.replace(/[\r\n]+/g, " ");
    if (!text.trim()) return;
    input.value = "";
    send(text);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && app.active) {
      const c = conv(app.active);
      if (c.unread) {
        c.unread = 0;
        saveState();
        renderSoon();
      }
    }
  });
  wireDialogs();
}

function main() {
  app.list = new MessageList($("messages"), $("jump-latest"), {
    nameOf,
    myUid: () => (app.session ? app.session.uid : ""),
    onNeedOlder: () => {
      const c = app.active && conv(app.active);
      if (c) loadHistory(c, true);
    },
    onRetry: (item) => {
      const c = app.active && conv(app.active);
      if (c) deliver(c, item);
    },
  });
  wireChat();
  app.session = loadSession();
  if (app.session) {
    loadState(app.session.uid);
    showChat();
  } else {
    showLogin();
  }
  setupConnection();
}

main();
