"""The client's logic, with no terminal: commands, login state, seqs, reconnects.

``ClientSession`` is what the interactive program drives, and what the tests
drive over real TCP. Output comes two ways: ``handle_input`` returns the lines
answering what was typed, and ``emit`` receives everything that happens on its
own (pushed messages, "connection lost", "reconnected").

Nothing is missed across a dropped connection: the session keeps the token of
the last REGISTER/LOGIN/AUTH and the seqs it has shown. When the connection
drops it reconnects with backoff, sends ``AUTH <token>`` and then
``SYNC <n>`` (following ``more=1`` pages), and shows each synced message whose
seq it has not shown yet. ``n`` is the highest seq seen, or — if higher — the
user's highest seq when they logged in, learned then with a ``SYNC`` probe, so
that a reconnect does not replay the whole inbox; older undelivered messages
stay available through ``pull``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import tzinfo
from typing import Final, TypedDict, assert_never

from mpim.client.commands import (
    MAX_ID,
    Blank,
    InputError,
    Quit,
    ServerCommand,
    ShowHelp,
    translate,
)
from mpim.client.connection import MpimConnection, redact
from mpim.client.display import format_line, format_reply, format_status
from mpim.client.reply import Reply, parse_kv
from mpim.client.seen import SeenSeqs
from mpim.protocol.messages import MessageLine

logger = logging.getLogger(__name__)

Emit = Callable[[str], None]
RetryWait = Callable[[int], Awaitable[None]]

BACKOFF_BASE: Final = 0.1
BACKOFF_MAX: Final = 5.0
QUIT_TIMEOUT: Final = 5.0
#: More ``more=1`` pages than this in one sync means a misbehaving server.
MAX_SYNC_PAGES: Final = 10_000
#: How often (in attempts) a still-failing reconnect is reported.
REPORT_EVERY: Final = 5
LOST_REPLY: Final = "connection lost before the reply; the command may or may not have taken effect"


class _DisplayArgs(TypedDict):
    """What every display call needs to know about "now" and "me"."""

    now_ms: int
    my_uid: int | None
    tz: tzinfo | None


async def backoff_wait(attempt: int) -> None:
    """Exponential backoff with jitter: ~0.1 s, 0.2 s, … capped at 5 s."""
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
    await asyncio.sleep(delay * random.uniform(0.5, 1.0))


class ClientSession:
    """One person's session against one server address."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        emit: Emit,
        retry_wait: RetryWait = backoff_wait,
        connect_timeout: float = 10.0,
        reconnect_wait: float = 60.0,
        clock: Callable[[], float] = time.time,
        tz: tzinfo | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._emit = emit
        self._retry_wait = retry_wait
        self._connect_timeout = connect_timeout
        self._reconnect_wait = reconnect_wait
        self._clock = clock
        self._tz = tz
        self._conn: MpimConnection | None = None
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._finished = False
        self._uid: int | None = None
        self._token: str | None = None
        self._seen = SeenSeqs()
        self._login_seq = 0

    # --- state, read-only for the app and tests ---

    @property
    def uid(self) -> int | None:
        return self._uid

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def last_seq(self) -> int:
        """The highest inbox seq shown so far; the default for ``sync``."""
        return self._seen.last_seq

    @property
    def connection(self) -> MpimConnection | None:
        """The current connection (replaced on reconnect)."""
        return self._conn

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed and self._connected.is_set()

    @property
    def finished(self) -> bool:
        """True after ``quit`` or :meth:`close`; the app then exits."""
        return self._finished

    # --- lifecycle ---

    async def connect(self) -> str:
        """First connection; raises ``ConnectionError`` (no retry: fail fast at start)."""
        conn = await self._open()
        self._conn = conn
        self._connected.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="mpim-client-supervisor")
        self._supervisor.add_done_callback(_log_crash)
        return f"connected to {self._host}:{self._port} ({conn.greeting.removeprefix('+OK ')})"

    async def close(self) -> None:
        """Stop reconnecting and close the connection. Idempotent."""
        self._finished = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            await asyncio.wait({supervisor})
        if self._conn is not None:
            await self._conn.close()

    # --- what the person typed ---

    async def handle_input(self, text: str) -> list[str]:
        """Run one typed line; return the lines to show for it."""
        if self._finished:
            return ["error: the client has quit"]
        parsed = translate(text, last_seq=self.last_seq)
        if isinstance(parsed, Blank):
            return []
        if isinstance(parsed, ShowHelp):
            return parsed.text.splitlines()
        if isinstance(parsed, InputError):
            return [f"error: {parsed.message}"]
        if isinstance(parsed, Quit):
            return await self._quit()
        if isinstance(parsed, ServerCommand):
            return await self._execute(parsed)
        assert_never(parsed)

    async def _execute(self, cmd: ServerCommand) -> list[str]:
        # A client message id makes a resent SEND/SENDGROUP land once.
        line = f"@cid={uuid.uuid4().hex} {cmd.line}" if cmd.accepts_cid else cmd.line
        notes: list[str] = []
        try:
            reply = await self._round_trip_with_retry(cmd, line, notes)
        except ConnectionError as exc:
            return [*notes, f"error: {exc}"]
        if cmd.word == "PULL":
            # What a reconnect's SYNC already showed comes again in PULL (SYNC does not
            # change it); "pull" means "what I have not got", so show only unseen ones.
            reply = Reply([line for line in reply.lines if self._note(line)], reply.status)
        else:
            for message in reply.lines:
                self._note(message)
        if reply.ok:
            await self._after_ok(cmd, reply)
        peer = _history_peer(cmd)
        return [*notes, *format_reply(cmd.word, reply, peer_uid=peer, **self._display_args())]

    async def _round_trip_with_retry(
        self, cmd: ServerCommand, line: str, notes: list[str]
    ) -> Reply:
        conn = await self._ready_connection()
        try:
            return await self._round_trip(conn, cmd, line)
        except ConnectionError:
            if not cmd.retry_safe:
                raise ConnectionError(LOST_REPLY) from None
            notes.append("connection lost; resending once reconnected")
        conn = await self._ready_connection()
        return await self._round_trip(conn, cmd, line)

    async def _round_trip(self, conn: MpimConnection, cmd: ServerCommand, line: str) -> Reply:
        if cmd.word == "SYNC":
            return await self._sync_all(conn, int(cmd.args[0]))
        return await conn.command(line)

    async def _after_ok(self, cmd: ServerCommand, reply: Reply) -> None:
        """Keep the login state the replies of REGISTER/LOGIN/AUTH/LOGOUT carry."""
        if cmd.word in ("REGISTER", "LOGIN", "AUTH"):
            kv = parse_kv(reply.status)
            token = kv.get("token") if cmd.word != "AUTH" else cmd.args[0]
            uid = kv.get("uid", "")
            if token is None or not uid.isdigit():
                logger.warning("login reply without uid/token: %s", redact(reply.status))
                return
            self._logged_in(int(uid), token)
            await self._probe_login_seq()
        elif cmd.word == "LOGOUT":
            self._forget_login()

    async def _quit(self) -> list[str]:
        self._finished = True  # from here on a closed connection is not a loss
        conn = self._conn
        out = ["bye"]
        if conn is not None and not conn.closed:
            try:
                async with asyncio.timeout(QUIT_TIMEOUT):
                    out = [format_status("QUIT", await conn.command("QUIT"))]
            except (ConnectionError, TimeoutError) as exc:
                logger.debug("QUIT got no reply: %s", exc)
        await self.close()
        return out

    # --- login state and seqs ---

    def _logged_in(self, uid: int, token: str) -> None:
        if uid != self._uid:
            self._seen.reset()  # seqs are per user
            self._login_seq = 0
        self._uid = uid
        self._token = token

    def _forget_login(self) -> None:
        self._uid = None
        self._token = None

    async def _probe_login_seq(self) -> None:
        """Learn the user's current highest seq, so a reconnect syncs from there.

        ``SYNC <max>`` returns no messages and ``seq=<current highest>``.
        """
        try:
            conn = await self._ready_connection()
            reply = await conn.command(f"SYNC {MAX_ID}")
        except ConnectionError as exc:
            logger.debug("seq probe failed: %s", exc)
            return
        self._show_new(reply.lines)  # only pushes that raced the probe
        seq = parse_kv(reply.status).get("seq", "")
        if reply.ok and seq.isdigit():
            self._login_seq = max(self._login_seq, int(seq))

    def _resume_seq(self) -> int:
        return max(self._seen.last_seq, self._login_seq)

    def _note(self, line: str) -> bool:
        """Record a message line's seq; True if it should be shown (not seen before)."""
        try:
            seq = MessageLine.parse(line).seq
        except ValueError:
            return True
        return self._seen.add(seq)

    def _show_new(self, lines: list[str]) -> None:
        for line in lines:
            if self._note(line):
                self._emit(format_line(line, **self._display_args()))

    def _on_push(self, line: str) -> None:
        """Called by the connection for each pushed line."""
        self._show_new([line])

    def _display_args(self) -> _DisplayArgs:
        return {"now_ms": int(self._clock() * 1000), "my_uid": self._uid, "tz": self._tz}

    # --- connection management ---

    async def _open(self) -> MpimConnection:
        return await MpimConnection.open(
            self._host, self._port, on_push=self._on_push, timeout=self._connect_timeout
        )

    async def _ready_connection(self) -> MpimConnection:
        """The live connection, waiting (bounded) while a reconnect is under way."""
        while True:
            if self._finished:
                raise ConnectionError("the client has quit")
            conn = self._conn
            if conn is not None and not conn.closed and self._connected.is_set():
                return conn
            self._connected.clear()
            try:
                async with asyncio.timeout(self._reconnect_wait):
                    await self._connected.wait()
            except TimeoutError:
                raise ConnectionError("not connected (still reconnecting)") from None

    async def _sync_all(self, conn: MpimConnection, after: int) -> Reply:
        """``SYNC after``, following ``more=1`` pages; one Reply with every line."""
        lines: list[str] = []
        for _ in range(MAX_SYNC_PAGES):
            reply = await conn.command(f"SYNC {after}")
            lines.extend(reply.lines)
            kv = parse_kv(reply.status)
            seq = kv.get("seq", "")
            if not (reply.ok and kv.get("more") == "1" and seq.isdigit() and int(seq) > after):
                return Reply(lines, reply.status)
            after = int(seq)
        logger.warning("sync stopped after %d pages", MAX_SYNC_PAGES)
        return Reply(lines, reply.status)

    async def _supervise(self) -> None:
        """Wait for the connection to drop; then reconnect, until the session ends."""
        while not self._finished:
            conn = self._conn
            if conn is None:
                return
            await conn.wait_closed()
            if self._finished:
                return
            self._connected.clear()
            self._emit(f"connection lost ({conn.close_reason}); reconnecting…")
            await self._reconnect()

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._finished:
            attempt += 1
            await self._retry_wait(attempt)
            try:
                conn = await self._open()
            except OSError as exc:
                logger.debug("reconnect attempt %d failed: %s", attempt, exc)
                if attempt % REPORT_EVERY == 0:
                    self._emit(f"still reconnecting (attempt {attempt}): {exc}")
                continue
            try:
                await self._resume(conn)
            except ConnectionError as exc:
                logger.debug("resume after reconnect failed: %s", exc)
                await conn.close()
                continue
            except BaseException:  # cancelled by close(): do not leak the new socket
                await conn.close()
                raise
            self._conn = conn
            self._connected.set()
            return

    async def _resume(self, conn: MpimConnection) -> None:
        """Log the new connection in again and show what was missed meanwhile."""
        reconnected = f"reconnected to {self._host}:{self._port}"
        if self._token is None:
            self._emit(reconnected)
            return
        auth = await conn.command(f"AUTH {self._token}")
        if not auth.ok:
            self._forget_login()
            self._emit(
                f"{reconnected}, but could not resume the session ({auth.detail}); "
                "please log in again"
            )
            return
        self._emit(f"{reconnected}; session resumed as uid {self._uid}")
        synced = await self._sync_all(conn, self._resume_seq())
        # A push racing the reply is folded into it (see MpimConnection); seq order fixes it.
        self._show_new(sorted(synced.lines, key=_seq_or_zero))


def _history_peer(cmd: ServerCommand) -> int | None:
    if cmd.word == "HISTORY" and cmd.args and cmd.args[0].isdigit():
        return int(cmd.args[0])
    return None


def _seq_or_zero(line: str) -> int:
    try:
        return MessageLine.parse(line).seq
    except ValueError:
        return 0


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("client supervisor crashed; no more reconnects", exc_info=exc)
