// Pure parts of the MPIM line protocol: parsing reply and message lines,
// human error texts, and seq bookkeeping. No DOM, no sockets.
//
// Ids (message, user, group) are kept as decimal strings: message ids are
// 63-bit snowflakes, beyond what a JS number holds exactly. Compare them with
// compareIds(), which uses BigInt.

/** A -ERR reply, carrying the stable code (the text after "-ERR "). */
export class ReplyError extends Error {
  constructor(code, command) {
    super(errorText(code));
    this.name = "ReplyError";
    this.code = code;
    this.command = command;
  }
}

/** The connection dropped before the command got its reply. */
export class ConnectionLost extends Error {
  constructor() {
    super("Connection lost; reconnecting…");
    this.name = "ConnectionLost";
  }
}

// Every code in mpim/errors.py, in words a user understands.
const ERROR_TEXTS = {
  "line too long": "That is too long to send.",
  "invalid utf-8": "The text contains characters that cannot be sent.",
  "invalid character": "The text contains characters that cannot be sent.",
  "unknown command": "The server did not understand the request.",
  "missing argument": "Please fill in every field.",
  "too many arguments": "Too many values: remove the spaces.",
  "bad cid": "Internal error: bad message id.",
  "cid not allowed for this command": "Internal error: message id not allowed here.",
  "bad uid": "That is not a valid user ID (a number such as 42).",
  "bad group_id": "That is not a valid group ID (a number such as 7).",
  "bad seq": "Could not catch up with new messages (bad seq).",
  "bad limit": "Could not load older messages (bad limit).",
  "bad before_id": "Could not load older messages (bad position).",
  "bad conversation": "Could not load that conversation.",
  "bad username": "Usernames are 1–32 characters: letters, digits, _ . or -.",
  "bad password": "Passwords are 6–128 characters, without spaces.",
  "bad token": "Your saved session is invalid; please log in again.",
  "bad group name": "Group names are 1–64 characters, without spaces.",
  "empty text": "Type a message first.",
  "text too long": "That message is too long.",
  "description too long": "The description is too long (512 characters at most).",
  "not login": "You are not logged in.",
  "auth failed": "Wrong username or password.",
  "too many login attempts": "Too many failed attempts: wait a moment and try again.",
  "rate limited": "You are sending too fast: slow down a little.",
  "user exists": "That username is taken.",
  "no such user": "There is no user with that ID.",
  "cannot send to self": "You cannot message yourself.",
  "cannot add yourself": "You cannot add yourself as a friend.",
  "already friends": "You are already friends.",
  "not friends": "You are not friends with that user.",
  "no such group": "There is no group with that ID.",
  "already member": "You are already a member of that group.",
  "not member": "You are not a member of that group.",
  "service unavailable": "The server is busy or restarting; try again in a moment.",
  "server shutting down": "The server is restarting; reconnecting…",
  "internal error": "Something went wrong on the server; try again.",
};

export function errorText(code) {
  return ERROR_TEXTS[code] ?? `The server refused: ${code}`;
}

/** Parse "+OK a=1 b=2" style replies into {a: "1", b: "2"}. */
export function parseFields(reply) {
  const fields = {};
  for (const part of reply.replace(/^\+OK\s*/, "").split(" ")) {
    const eq = part.indexOf("=");
    if (eq > 0) fields[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return fields;
}

/** Parse "+OK friends: 3,7" / "+OK groups: " / "+OK members: 1" into ids. */
export function parseIdList(reply) {
  const colon = reply.indexOf(":");
  if (colon < 0) return [];
  return reply
    .slice(colon + 1)
    .trim()
    .split(",")
    .filter((s) => /^[0-9]+$/.test(s));
}

/**
 * Parse a MSG or GMSG line. Returns null for anything else.
 * text= is always last and runs to the end of the line, spaces included.
 */
export function parseMessageLine(line) {
  const kind = line.startsWith("MSG ") ? "MSG" : line.startsWith("GMSG ") ? "GMSG" : null;
  if (kind === null) return null;
  const at = line.indexOf(" text=");
  if (at < 0) return null;
  const head = parseFields(line.slice(kind.length + 1, at));
  const text = line.slice(at + 6);
  if (!head.id || !head.from) return null;
  return {
    id: head.id,
    from: head.from,
    group: kind === "GMSG" ? head.group : null,
    ts: Number(head.ts || 0),
    seq: Number(head.seq || 0),
    text,
  };
}

/**
 * "u<uid>" for a one-to-one chat with <uid>, "g<gid>" for a group. Pushed and
 * synced lines are always messages to me, so the peer is the sender; HISTORY
 * lines (which include my own) get their key from the request instead.
 */
export function conversationKey(msg) {
  return msg.group ? `g${msg.group}` : `u${msg.from}`;
}

export function compareIds(a, b) {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A fresh client message id for idempotent SEND/SENDGROUP retries. */
export function newCid() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "w" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Which inbox seqs this device has seen. `floor` is the highest seq such that
 * every seq up to it has been seen (what SYNC should continue from); seqs seen
 * above it wait in `above` until the gap fills. A gap means a push was missed
 * (or swallowed by a HISTORY reply): the caller runs SYNC from `floor`.
 */
export class SeqTracker {
  constructor(floor = 0) {
    this.floor = floor;
    this.above = new Set();
  }

  /** Record a seen seq; returns true if it was not seen before. */
  observe(seq) {
    if (!(seq > this.floor) || this.above.has(seq)) return false;
    this.above.add(seq);
    while (this.above.has(this.floor + 1)) {
      this.floor += 1;
      this.above.delete(this.floor);
    }
    return true;
  }

  /** A complete SYNC ended at `seq`: everything up to it has been seen. */
  syncedTo(seq) {
    if (seq > this.floor) this.floor = seq;
    for (const s of this.above) if (s <= this.floor) this.above.delete(s);
  }

  get hasGap() {
    return this.above.size > 0;
  }
}

/** The command line must be one protocol line: no line breaks, no NUL. */
export function checkLine(line) {
  if (/[\r\n\0]/.test(line)) throw new Error("A message cannot contain line breaks.");
  return line;
}
