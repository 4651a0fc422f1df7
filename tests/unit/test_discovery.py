"""The Registry port without ZooKeeper: Instance, the shared view, StaticRegistry."""

from __future__ import annotations

import asyncio

import pytest

from mpim.discovery import Instance, Registry, StaticRegistry
from mpim.discovery.base import split_address


def inst(service: str, instance_id: str, port: int = 7001, **metadata: str) -> Instance:
    return Instance(service, instance_id, f"127.0.0.1:{port}", dict(metadata))


def test_an_instance_round_trips_through_its_registration_json() -> None:
    original = inst("message", "m-1", 7002, zone="a")
    assert Instance.from_json("message", "m-1", original.to_json()) == original
    assert (original.host, original.port) == ("127.0.0.1", 7002)


@pytest.mark.parametrize(
    ("address", "expected"),
    [("10.0.0.1:50051", ("10.0.0.1", 50051)), ("[::1]:7000", ("::1", 7000)), ("h:1", ("h", 1))],
)
def test_addresses_split_into_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["nohost", ":80", "h:", "h:0", "h:70000", "h:x"])
def test_a_bad_address_is_refused_naming_it(address: str) -> None:
    with pytest.raises(ValueError, match="invalid address"):
        Instance("user", "u-1", address)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "with space", "x" * 129])
def test_names_that_cannot_be_a_znode_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        Instance("user", name, "127.0.0.1:1")
    with pytest.raises(ValueError, match="invalid"):
        Instance(name, "u-1", "127.0.0.1:1")


@pytest.mark.parametrize(
    "data", [b"not json", b"[]", b'{"metadata": {}}', b'{"address": "h:1", "metadata": []}']
)
def test_foreign_registration_data_is_rejected(data: bytes) -> None:
    with pytest.raises(ValueError):
        Instance.from_json("user", "u-1", data)


def test_static_registry_satisfies_the_port() -> None:
    registry: Registry = StaticRegistry()
    assert registry.instances("user") == []


async def test_static_registry_serves_its_mapping_sorted_by_id() -> None:
    registry = StaticRegistry.from_mapping(
        {"message": ["127.0.0.1:7002", "127.0.0.1:7001"], "user": {"u-b": "h:2", "u-a": "h:1"}}
    )
    await registry.start()
    await registry.watch("message")
    assert [(i.instance_id, i.address) for i in registry.instances("message")] == [
        ("message-1", "127.0.0.1:7002"),
        ("message-2", "127.0.0.1:7001"),
    ]
    assert [i.instance_id for i in registry.instances("user")] == ["u-a", "u-b"]
    assert registry.instances("group") == []


async def test_static_registry_tells_listeners_and_waiters_about_changes() -> None:
    registry = StaticRegistry()
    seen: list[tuple[str, list[str]]] = []
    remove = registry.add_listener(
        lambda service, found: seen.append((service, [i.instance_id for i in found]))
    )
    waiter = asyncio.create_task(registry.wait_for("user", lambda found: len(found) == 2))
    await registry.register(inst("user", "u-1"))
    assert not waiter.done()
    await registry.register(inst("user", "u-2", 7002))
    assert [i.instance_id for i in await asyncio.wait_for(waiter, 1)] == ["u-1", "u-2"]

    await registry.register(inst("user", "u-2", 7002))  # no change, no news
    remove()
    await registry.deregister(inst("user", "u-1"))
    assert seen == [("user", ["u-1"]), ("user", ["u-1", "u-2"])]
    assert [i.instance_id for i in registry.instances("user")] == ["u-2"]


async def test_wait_for_gives_up_after_its_timeout() -> None:
    registry = StaticRegistry()
    with pytest.raises(TimeoutError):
        await registry.wait_for("user", bool, timeout=0.05)


async def test_a_failing_listener_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = StaticRegistry()
    calls: list[str] = []

    def broken(service: str, found: list[Instance]) -> None:
        raise RuntimeError("boom")

    registry.add_listener(broken)
    registry.add_listener(lambda service, found: calls.append(service))
    await registry.register(inst("user", "u-1"))
    assert calls == ["user"]
    assert "listener" in caplog.text


async def test_stop_withdraws_what_this_process_registered_but_keeps_configuration() -> None:
    registry = StaticRegistry([inst("user", "configured")])
    await registry.register(inst("user", "mine", 7002))
    await registry.stop()
    assert [i.instance_id for i in registry.instances("user")] == ["configured"]
