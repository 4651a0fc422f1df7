"""The web client end to end: real headless Chromium pages against a real ``mpim up``.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright's Python
package with ``executable_path`` set: browsers cannot be downloaded here.
``scripts/install_browser_deps`` installs both. In CI (``CI=true``) a missing
browser fails these tests; elsewhere they are skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.support.lineclient import LineClient

try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        Page,
        Playwright,
        WebSocketRoute,
        async_playwright,
        expect,
    )
except ImportError:  # pragma: no cover - reported by the fixture below
    HAVE_PLAYWRIGHT = False
else:
    HAVE_PLAYWRIGHT = True

CHROMIUM = os.environ.get("MPIM_CHROMIUM", "/usr/bin/chromium")
# As root on this machine Chromium needs --no-sandbox; without the background
# networking flags it keeps trying to reach Google's hosts, which the closed
# network refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
UI_TIMEOUT_MS = 15_000
_HTTP_LISTENING = re.compile(r"http listening on (\S+):(\d+)")
_TCP_LISTENING = re.compile(r"listening on (\S+):(\d+)")

pytestmark = pytest.mark.timeout(180)


def _browser_missing() -> str | None:
    if not HAVE_PLAYWRIGHT:
        return "the playwright Python package is not installed"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found at {CHROMIUM}"
    return None


def _require_browser() -> None:
    missing = _browser_missing()
    if missing is None:
        return
    hint = f"{missing}; run scripts/install_browser_deps"
    if IN_CI:
        pytest.fail(hint)
    pytest.skip(hint)


# -- a real `mpim up` ----------------------------------------------------------------


@dataclass
class MpimUp:
    """``mpim up`` as a child process on free TCP and HTTP ports."""

    proc: asyncio.subprocess.Process
    tcp_port: int
    http_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    @classmethod
    async def start(cls, data_dir: Path, log: Path) -> MpimUp:
        env = dict(os.environ)
        env.update(
            MPIM_GATEWAY__HTTP_PORT="0",
            MPIM_SECURITY__ARGON2_MEMORY_KIB="256",
            MPIM_SECURITY__ARGON2_TIME_COST="1",
        )
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mpim", "up", "--port", "0", "--data-dir", str(data_dir),
                stdout=asyncio.subprocess.PIPE, stderr=err, env=env,
            )  # fmt: skip
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        # The HTTP port is logged (stderr) before the TCP line is printed.
        logged = await asyncio.to_thread(log.read_text)
        tcp = _TCP_LISTENING.search(line)
        http = _HTTP_LISTENING.search(logged)
        if tcp is None or http is None:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"mpim up did not start: {line!r}\n{logged}")
        return cls(proc, int(tcp.group(2)), int(http.group(2)), log)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def mpim(tmp_path: Path) -> AsyncIterator[MpimUp]:
    _require_browser()
    server = await MpimUp.start(tmp_path / "data", tmp_path / "mpim.log")
    yield server
    await server.stop()


# -- browsers ------------------------------------------------------------------------


@dataclass
class Browsers:
    """One Chromium; each user gets a context (own localStorage) and pages in it."""

    browser: Browser
    base_url: str
    shots: Path
    errors: list[str] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)

    async def context(self) -> BrowserContext:
        ctx = await self.browser.new_context(
            viewport={"width": 1200, "height": 760}, base_url=self.base_url
        )
        self.contexts.append(ctx)
        return ctx

    async def page(self, ctx: BrowserContext) -> Page:
        page = await ctx.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda m: self._console(m.type, m.text))
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await page.goto("/")
        return page

    def _console(self, kind: str, text: str) -> None:
        # The page logs expected drops as warnings; errors are bugs (CSP too).
        if kind == "error" and "WebSocket" not in text:
            self.errors.append(f"console error: {text}")

    async def shot(self, page: Page, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await page.screenshot(path=str(path))
        return path


@pytest.fixture
async def browsers(mpim: MpimUp, tmp_path: Path) -> AsyncIterator[Browsers]:
    shots = Path(os.environ.get("MPIM_SCREENSHOT_DIR", str(tmp_path / "screenshots")))
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await _launch(pw)
        env = Browsers(browser, mpim.url, shots)
        try:
            yield env
        finally:
            for ctx in env.contexts:
                await ctx.close()
            await browser.close()
    assert not env.errors, env.errors


async def _launch(pw: Playwright) -> Browser:
    return await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)


# -- page helpers --------------------------------------------------------------------


async def register(page: Page, username: str, password: str = "secret1") -> str:
    """Register through the login form; returns the uid the page shows."""
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#register-submit")
    await expect(page.locator("#chat-view")).to_be_visible()
    await expect(page.locator("#me-uid")).to_have_text(re.compile(r"^\d+$"))
    return await page.inner_text("#me-uid")


async def dialog(page: Page, opener: str, fields: dict[str, str]) -> None:
    await page.click(opener)
    form = page.locator("dialog[open] form")
    for name, value in fields.items():
        await form.locator(f"input[name={name}]").fill(value)
    await form.locator("button[value=ok]").click()
    await expect(page.locator("dialog[open]")).to_have_count(0)


async def send(page: Page, text: str) -> None:
    await page.fill("#composer-input", text)
    await page.press("#composer-input", "Enter")
    # Acknowledged: the bubble carries the server's message id.
    mine = page.locator("#messages .msg.mine[data-id]").filter(has_text=text)
    await expect(mine.last).to_be_visible()


def conv_item(page: Page, key: str) -> Any:
    return page.locator(f'.conv-item[data-conv="{key}"]')


def message(page: Page, text: str) -> Any:
    return page.locator("#messages .msg .text").filter(has_text=re.compile(f"^{re.escape(text)}$"))


async def wait_online(page: Page, key: str, online: bool) -> None:
    dot = conv_item(page, key).locator(".dot")
    if online:
        await expect(dot).to_have_class(re.compile(r"\bonline\b"))
    else:
        await expect(dot).not_to_have_class(re.compile(r"\bonline\b"))


# -- tests ---------------------------------------------------------------------------


async def test_two_users_chat_presence_groups_reload_and_offline_delivery(
    browsers: Browsers,
) -> None:
    alice_ctx = await browsers.context()
    bob_ctx = await browsers.context()
    alice = await browsers.page(alice_ctx)
    bob = await browsers.page(bob_ctx)
    shots = [await browsers.shot(alice, "01-login")]
    a_uid = await register(alice, "alice")
    b_uid = await register(bob, "bob")

    # Befriend: alice adds bob (with a local name); bob's list picks it up.
    await dialog(alice, "#add-friend", {"uid": b_uid, "name": "Bob"})
    await expect(alice.locator("#conv-name")).to_have_text("Bob")
    await expect(conv_item(bob, f"u{a_uid}")).to_be_visible()
    await wait_online(alice, f"u{b_uid}", True)
    await wait_online(bob, f"u{a_uid}", True)

    # Chat both ways; markup in a message is shown as text, never parsed.
    hostile = "Hi Bob <b>bold?</b> <img src=x onerror=alert(1)>"
    await send(alice, hostile)
    await expect(conv_item(bob, f"u{a_uid}").locator(".badge")).to_have_text("1")
    await conv_item(bob, f"u{a_uid}").click()
    await expect(message(bob, hostile)).to_have_count(1)
    assert await bob.locator("#messages b, #messages img").count() == 0
    await expect(conv_item(bob, f"u{a_uid}").locator(".badge")).to_have_count(0)
    await send(bob, "Hey Alice, how are you?")
    await expect(message(alice, "Hey Alice, how are you?")).to_have_count(1)
    await expect(alice.locator("#messages .msg time").first).to_have_text(re.compile(r"\d"))
    shots.append(await browsers.shot(alice, "02-alice-chat"))
    shots.append(await browsers.shot(bob, "03-bob-chat"))

    # Presence: bob closes his page, goes offline; alice writes meanwhile.
    await bob.close()
    await wait_online(alice, f"u{b_uid}", False)
    await send(alice, "sent while you were away")
    # He opens it again: still logged in (token), and the message is there once.
    bob = await browsers.page(bob_ctx)
    await expect(bob.locator("#chat-view")).to_be_visible()
    await expect(message(bob, "sent while you were away")).to_have_count(1)
    await expect(message(bob, hostile)).to_have_count(1)
    await wait_online(alice, f"u{b_uid}", True)

    # A group: alice creates it, bob joins by id, both write.
    await dialog(alice, "#create-group", {"name": "weekend-trip", "desc": "plans for Saturday"})
    group_item = alice.locator('#group-list .conv-item[data-conv^="g"]')
    await expect(group_item).to_have_count(1)
    gid = (await group_item.get_attribute("data-conv") or "")[1:]
    await send(alice, "Welcome to the trip group")
    await dialog(bob, "#join-group", {"gid": gid, "name": "Trip"})
    await expect(bob.locator("#conv-name")).to_have_text("Trip")
    await expect(message(bob, "Welcome to the trip group")).to_have_count(1)  # HISTORY
    await send(bob, "Count me in!")
    await expect(message(alice, "Count me in!")).to_have_count(1)
    await expect(alice.locator("#messages .msg .who").last).to_have_text("Bob")
    await alice.click("#conv-members")
    await expect(alice.locator("#members-list li")).to_have_count(2)
    shots.append(await browsers.shot(alice, "04-group-members"))
    await alice.locator("dialog[open] button[value=cancel]").click()
    shots.append(await browsers.shot(bob, "05-bob-group"))

    # Reload: still logged in, back in the same conversation, history loaded.
    await alice.reload()
    await expect(alice.locator("#chat-view")).to_be_visible()
    await expect(alice.locator("#conv-name")).to_have_text("weekend-trip")
    await expect(message(alice, "Count me in!")).to_have_count(1)
    await expect(message(alice, "Welcome to the trip group")).to_have_count(1)
    await conv_item(alice, f"u{b_uid}").click()
    await expect(message(alice, hostile)).to_have_count(1)
    await expect(message(alice, "Hey Alice, how are you?")).to_have_count(1)
    shots.append(await browsers.shot(alice, "06-after-reload"))

    # Leave the group, remove the friend.
    await conv_item(bob, f"g{gid}").click()
    await bob.click("#conv-leave")
    await expect(conv_item(bob, f"g{gid}")).to_have_count(0)
    await alice.click("#conv-unfriend")
    await expect(alice.locator("#conv-befriend")).to_be_visible()

    for shot in shots:
        assert shot.is_file() and shot.stat().st_size > 1000, shot


async def test_reconnects_after_a_drop_and_catches_up_without_duplicates(
    browsers: Browsers, mpim: MpimUp
) -> None:
    ctx = await browsers.context()
    block = asyncio.Event()
    routes: list[WebSocketRoute] = []

    async def proxy(ws: WebSocketRoute) -> None:
        if block.is_set():
            await ws.close(code=1011, reason="blocked by the test")
            return
        routes.append(ws)
        ws.connect_to_server()

    await ctx.route_web_socket(re.compile(r".*/ws$"), proxy)
    page = await browsers.page(ctx)
    uid = await register(page, "carol")
    sender = await LineClient.connect("127.0.0.1", mpim.tcp_port)
    try:
        await sender.register("dave")
        assert sender.account is not None
        key = f"u{sender.account.uid}"
        assert (await sender.cmd(f"SEND {uid} before the drop")).startswith("+OK")
        await conv_item(page, key).click()
        await expect(message(page, "before the drop")).to_have_count(1)

        # Drop the connection and keep it down while messages are sent.
        block.set()
        await routes[-1].close(code=1001, reason="drop")
        await expect(page.locator("#banner")).to_contain_text("Reconnecting")
        for i in range(3):
            assert (await sender.cmd(f"SEND {uid} during the drop {i}")).startswith("+OK")
        block.clear()

        # Back by itself: every message once, none twice.
        await expect(page.locator("#banner")).to_be_hidden(timeout=20_000)
        for i in range(3):
            await expect(message(page, f"during the drop {i}")).to_have_count(1)
        await expect(message(page, "before the drop")).to_have_count(1)
        assert (await sender.cmd(f"SEND {uid} after the drop")).startswith("+OK")
        await expect(message(page, "after the drop")).to_have_count(1)
        await expect(page.locator("#messages .msg")).to_have_count(5)
    finally:
        await sender.close()


async def test_errors_are_shown_in_words(browsers: Browsers) -> None:
    ctx = await browsers.context()
    page = await browsers.page(ctx)
    await register(page, "erin")
    # A second page cannot take the same name.
    other = await browsers.page(await browsers.context())
    await other.fill("#login-username", "ERIN")
    await other.fill("#login-password", "secret1")
    await other.click("#register-submit")
    await expect(other.locator("#login-error")).to_have_text("That username is taken.")
    await other.fill("#login-password", "wrong-password")
    await other.click("#login-submit")
    await expect(other.locator("#login-error")).to_have_text("Wrong username or password.")
    # Unknown user and group ids: the dialog says why and stays open.
    await page.click("#add-friend")
    await page.locator("dialog[open] input[name=uid]").fill("999999")
    await page.locator("dialog[open] button[value=ok]").click()
    await expect(page.locator("dialog[open] .error")).to_have_text("There is no user with that ID.")
    await page.locator("dialog[open] button[value=cancel]").click()
    await page.click("#join-group")
    await page.locator("dialog[open] input[name=gid]").fill("424242")
    await page.locator("dialog[open] button[value=ok]").click()
    await expect(page.locator("dialog[open] .error")).to_have_text(
        "There is no group with that ID."
    )
    await browsers.shot(page, "07-error")


async def test_thousands_of_messages_keep_the_page_small_and_responsive(
    browsers: Browsers, mpim: MpimUp
) -> None:
    ctx = await browsers.context()
    page = await browsers.page(ctx)
    uid = await register(page, "frank")
    sender = await LineClient.connect("127.0.0.1", mpim.tcp_port)
    count = 3000
    try:
        await sender.register("grace")
        assert sender.account is not None
        key = f"u{sender.account.uid}"
        assert (await sender.cmd(f"SEND {uid} m0")).startswith("+OK")
        await conv_item(page, key).click()
        await expect(message(page, "m0")).to_have_count(1)
        await sender.send_raw(b"".join(f"SEND {uid} m{i}\n".encode() for i in range(1, count)))
        for _ in range(1, count):
            assert (await sender.read_line()).startswith("+OK msg_id=")
        await expect(message(page, f"m{count - 1}")).to_have_count(1, timeout=30_000)
        nodes = await page.locator("#messages .msg").count()
        assert nodes <= 300, f"{nodes} message nodes in the DOM"
        # Still responsive: a send round-trips promptly.
        await send(page, "still quick")
        # Scrolling up walks back through all of them, with a bounded DOM.
        scroll_to_first = await _poll(
            page,
            """() => {
                const el = document.getElementById('messages');
                el.scrollTop = 0;
                el.dispatchEvent(new Event('scroll'));
                return [...el.querySelectorAll('.text')].some(t => t.textContent === 'm0');
            }""",
        )
        assert scroll_to_first
        assert await page.locator("#messages .msg").count() <= 300
        await browsers.shot(page, "08-many-messages")
    finally:
        await sender.close()


async def _poll(page: Page, js: str, timeout_ms: int = 30_000) -> bool:
    handle = await page.wait_for_function(js, timeout=timeout_ms, polling=50)
    return bool(await handle.json_value())


def test_chromium_is_present_in_ci() -> None:
    """CI must run the browser tests: a missing browser is a failure there."""
    if IN_CI:
        assert _browser_missing() is None, "run scripts/install_browser_deps"
    elif _browser_missing() is not None:
        pytest.skip(_browser_missing() or "")
    assert shutil.which(CHROMIUM) or os.path.isfile(CHROMIUM)
