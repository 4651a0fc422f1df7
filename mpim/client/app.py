"""The interactive ``mpim client`` program: a thin terminal loop around ClientSession.

On a terminal it uses prompt_toolkit: ``prompt_async`` inside ``patch_stdout``
so pushed messages print above the prompt without garbling the line being
typed. When stdin or stdout is not a terminal (piped commands, scripts) it reads
stdin line by line instead, runs each command to its reply, and exits at EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from typing import Final

from prompt_toolkit import PromptSession
from prompt_toolkit.patch_stdout import patch_stdout

from mpim.client.session import ClientSession

logger = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 6000
PROMPT: Final = "mpim> "
#: Lines read ahead from a pipe; bounds memory when stdin is a huge file.
STDIN_QUEUE_SIZE: Final = 64


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port``, ``:port``, ``host`` or ``[::1]:port`` -> ``(host, port)``."""
    host, sep, port = addr.rpartition(":")
    if not sep or "]" in port:
        host, port = addr, str(DEFAULT_PORT)
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in address {addr!r}")
    return host, int(port)


def run_client(host: str, port: int) -> int:
    """Run the client until ``quit`` or end of input; returns the exit code."""
    try:
        return asyncio.run(_main(host, port))
    except KeyboardInterrupt:
        return 130


def _print(line: str) -> None:
    print(line, flush=True)


async def _main(host: str, port: int) -> int:
    if sys.stdin.isatty() and sys.stdout.isatty():
        return await _interactive(host, port)
    return await _piped(host, port)


async def _start(session: ClientSession, host: str, port: int) -> bool:
    try:
        _print(await session.connect())
    except OSError as exc:
        print(f"cannot connect to {host}:{port}: {exc}", file=sys.stderr, flush=True)
        return False
    return True


async def _interactive(host: str, port: int) -> int:
    prompt: PromptSession[str] = PromptSession()
    with patch_stdout():
        session = ClientSession(host, port, emit=_print)
        if not await _start(session, host, port):
            return 1
        _print("type 'help' for the commands, 'quit' to leave")
        try:
            while not session.finished:
                try:
                    text = await prompt.prompt_async(PROMPT)
                except KeyboardInterrupt:
                    continue  # Ctrl-C clears the line, like a shell
                except EOFError:
                    text = "quit"  # Ctrl-D
                for line in await session.handle_input(text):
                    _print(line)
        finally:
            await session.close()
    return 0


async def _piped(host: str, port: int) -> int:
    session = ClientSession(host, port, emit=_print)
    if not await _start(session, host, port):
        return 1
    lines = _read_stdin_in_thread()
    try:
        while not session.finished:
            text = await lines.get()
            if text is None:
                break
            for line in await session.handle_input(text):
                _print(line)
    finally:
        await session.close()
    return 0


def _read_stdin_in_thread() -> asyncio.Queue[str | None]:
    """Lines of stdin, then ``None`` at EOF.

    A daemon thread, because blocking reads cannot be cancelled: after ``quit``
    the program must exit even if stdin stays open. Works for pipes and files
    alike (an event-loop pipe reader cannot watch a regular file).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue(STDIN_QUEUE_SIZE)

    def put(item: str | None) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def reader() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: we are exiting
            for raw in sys.stdin.buffer:
                put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            put(None)

    threading.Thread(target=reader, name="mpim-client-stdin", daemon=True).start()
    return queue
