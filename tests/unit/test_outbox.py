"""The bounded send queue: order, the byte limit, closing."""

import asyncio

import pytest

from realtime.socket.outbox import MAX_CLOSE_REASON, Outbox, Overflow, close_message

pytestmark = pytest.mark.unit


class Receiver:
    """An ASGI `send` that records messages and can stop reading."""

    def __init__(self):
        self.messages = []
        self.reading = asyncio.Event()
        self.reading.set()
        self.got = asyncio.Condition()

    async def __call__(self, message):
        await self.reading.wait()
        async with self.got:
            self.messages.append(message)
            self.got.notify_all()

    async def wait_for(self, count):
        async with self.got:
            await asyncio.wait_for(self.got.wait_for(lambda: len(self.messages) >= count), 5)


async def test_frames_go_out_in_order():
    receiver = Receiver()
    outbox = Outbox(receiver, limit=1000)
    outbox.start()
    for i in range(5):
        outbox.put_text(str(i))
    await receiver.wait_for(5)
    assert [m["text"] for m in receiver.messages] == ["0", "1", "2", "3", "4"]
    assert outbox.queued_bytes == 0
    outbox.stop()


async def test_overflow_when_the_reader_stops():
    receiver = Receiver()
    receiver.reading.clear()
    outbox = Outbox(receiver, limit=10)
    outbox.start()
    outbox.put_text("x" * 8)
    await asyncio.sleep(0)  # the writer takes the first frame and blocks in send
    outbox.put_text("y" * 8)
    with pytest.raises(Overflow):
        outbox.put_text("z" * 8)
    assert outbox.queued_bytes == 8
    outbox.stop()


async def test_a_single_large_frame_fits_an_empty_queue():
    outbox = Outbox(Receiver(), limit=10)
    outbox.put_text("x" * 50)
    assert outbox.queued_bytes == 50


async def test_the_limit_counts_utf8_bytes_not_characters():
    """Four 4-byte characters are 16 bytes; counted as characters, 4 MiB once passed a 1 MiB bound."""
    receiver = Receiver()
    receiver.reading.clear()
    outbox = Outbox(receiver, limit=40)
    outbox.start()
    outbox.put_text("x")
    await asyncio.sleep(0)  # the writer takes the first frame and blocks in send
    outbox.put_text("\U0001f600" * 4)
    outbox.put_text("é" * 8)
    assert outbox.queued_bytes == 32
    with pytest.raises(Overflow):
        outbox.put_text("\U0001f600" * 3)  # 3 characters, 12 bytes: over the 40
    outbox.stop()


async def test_close_sends_final_messages_after_the_queue():
    receiver = Receiver()
    outbox = Outbox(receiver, limit=1000)
    outbox.put_text("a")
    outbox.close([{"type": "websocket.close", "code": 1000}])
    outbox.put_text("ignored after close")
    outbox.start()
    await outbox.drain()
    assert receiver.messages == [{"type": "websocket.send", "text": "a"}, {"type": "websocket.close", "code": 1000}]
    assert outbox.closed


async def test_close_can_drop_the_backlog():
    receiver = Receiver()
    outbox = Outbox(receiver, limit=1000)
    for i in range(10):
        outbox.put_text(str(i))
    outbox.close([{"type": "websocket.close", "code": 4013}], drop_queued=True)
    outbox.close([{"type": "websocket.close", "code": 1000}])  # only the first close counts
    outbox.start()
    await outbox.drain()
    assert receiver.messages == [{"type": "websocket.close", "code": 4013}]
    assert outbox.queued_bytes == 0


async def test_a_failing_transport_stops_the_writer():
    async def gone(message):
        raise OSError("connection reset")

    outbox = Outbox(gone, limit=1000)
    outbox.put_text("a")
    outbox.close([])
    outbox.start()
    await outbox.drain()
    assert isinstance(outbox.failed, OSError)


async def test_an_idle_outbox_holds_no_task_and_starts_one_for_the_next_frame():
    receiver = Receiver()
    outbox = Outbox(receiver, limit=1000)
    outbox.put_text("queued before accept")
    assert outbox._writer is None  # nothing is sent before `start`
    outbox.start()
    await receiver.wait_for(1)
    await outbox.drain()
    assert outbox._writer.done()  # idle: no task waiting
    receiver.reading.clear()  # the client stops reading: the next writer waits in `send`
    outbox.put_text("a")
    outbox.put_text("b")  # taken by the running writer, not a second one
    writer = outbox._writer
    assert not writer.done()
    receiver.reading.set()
    await receiver.wait_for(3)
    await outbox.drain()
    assert outbox._writer is writer and writer.done()
    assert [m["text"] for m in receiver.messages] == ["queued before accept", "a", "b"]


async def test_after_a_failed_send_nothing_more_is_tried():
    async def broken(message):
        raise OSError("the transport is gone")

    outbox = Outbox(broken, limit=1000)
    outbox.start()
    outbox.put_text("x")
    await outbox.drain()
    assert isinstance(outbox.failed, OSError)
    outbox.put_text("y")
    assert outbox._writer.done() and outbox.queued_bytes == 0  # dropped: the disconnect event follows


def test_a_close_carries_its_reason_within_a_close_frame():
    assert close_message(4501, "unauthorized") == {"type": "websocket.close", "code": 4501, "reason": "unauthorized"}
    long = "é" * 100  # 200 bytes: cut to what a close frame holds, never inside a character
    reason = close_message(4503, long)["reason"]
    assert len(reason.encode()) <= MAX_CLOSE_REASON == 123 and long.startswith(reason) and len(reason) == 61
