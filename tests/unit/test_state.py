"""The process's Node (realtime/support/state.py): parts made once, per loop, closed, replaced."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from realtime.support import state
from realtime.support.advisory import advisory
from realtime.support.state import Node
from realtime.testing import fresh_node

pytestmark = pytest.mark.unit


class Part:
    """A part that records how it was closed."""

    closed: list[str] = []

    def __init__(self, name: str = "part") -> None:
        self.name = name

    def close(self) -> None:
        Part.closed.append(self.name)


class AsyncPart(Part):
    async def aclose(self) -> None:
        Part.closed.append(f"async {self.name}")


class Broken(Part):
    def close(self) -> None:
        raise RuntimeError("cannot close")


def test_a_part_is_made_once_by_its_class_or_factory():
    node = Node()
    assert node.part(Part) is node.part(Part)
    made = node.part(("part", "b"), lambda: Part("b"))
    assert made.name == "b" and node.part(("part", "b"), lambda: Part("other")) is made
    assert node.peek(("part", "b")) is made and node.peek("nothing") is None


def test_put_and_drop_replace_a_part():
    node = Node()
    first = node.part(Part)
    node.put(Part, replacement := Part("put"))
    assert node.part(Part) is replacement is not first
    assert node.drop(Part) is replacement and node.drop(Part) is None
    assert node.part(Part) is not replacement  # made anew


async def test_loop_parts_belong_to_the_running_loop():
    node = Node()
    here = node.loop_part(Part)
    assert node.loop_part(Part) is here and node.peek_loop(Part) is here
    elsewhere = await asyncio.to_thread(asyncio.run, _loop_part_of(node))
    assert elsewhere is not here
    assert node.peek_loop(Part) is here and node.peek_loop("nothing") is None


async def _loop_part_of(node: Node) -> Part:
    return node.loop_part(Part)


async def test_aclose_closes_what_the_node_made_newest_first_and_logs_a_failure(caplog):
    Part.closed = []
    node = Node()
    node.part("first", lambda: Part("first"))
    node.part("second", lambda: AsyncPart("second"))
    node.part("broken", lambda: Broken("broken"))
    node.part("plain", object)  # nothing to close
    node.loop_part("loop", lambda: Part("loop"))
    with caplog.at_level(logging.ERROR, logger="realtime.support.state"):
        await node.aclose()
    assert Part.closed == ["loop", "async second", "first"]
    assert "closing" in caplog.text and "cannot close" in caplog.text
    assert node.peek("first") is None and node.peek_loop("loop") is None


def test_current_is_made_lazily_and_replace_swaps_it():
    previous = state.replace(None)
    try:
        made = state.current()
        assert state.current() is made and not made.serving
        mine = Node()
        assert state.replace(mine) is made and state.current() is mine
        with state.using(Node()) as inner:
            assert state.current() is inner
        assert state.current() is mine
    finally:
        state.replace(previous)


async def test_fresh_node_puts_the_previous_back_and_closes_its_parts():
    Part.closed = []
    outer = state.current()
    async with fresh_node() as node:
        assert state.current() is node is not outer
        node.part("p", lambda: Part("fresh"))
    assert state.current() is outer and Part.closed == ["fresh"]
    with fresh_node() as node:
        assert state.current() is node
    assert state.current() is outer


def test_a_forked_child_starts_with_a_node_of_its_own():
    parent = state.current()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, b"new" if state.current() is not parent else b"same")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 4) == b"new" and state.current() is parent


async def test_a_failing_step_is_logged_once_per_streak(caplog):
    failing: set[str] = set()
    calls = []

    async def down():
        calls.append("down")
        raise ConnectionError("redis away")

    async def broken():
        raise ValueError("a bug")

    async def fine():
        calls.append("fine")

    with caplog.at_level(logging.WARNING, logger="realtime.runtime.node"):
        await advisory("presence", down, failing)
        await advisory("presence", down, failing)
        assert failing == {"presence"} and caplog.text.count("presence failed") == 1
        await advisory("records", broken, failing)
        await advisory("records", broken, failing)
        assert caplog.text.count("records failed") == 1 and "a bug" in caplog.text
        await advisory("presence", fine, failing)
    assert failing == {"records"} and calls == ["down", "down", "fine"]
