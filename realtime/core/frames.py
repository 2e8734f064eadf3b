"""The wire text of publications, built once and spliced, never parsed again.

A publication is serialised once, when it is published (`publication_parts`); the store puts
its position in (`splice_position`), the fan-out event carries its `message` frame ready to send
(`publication_event`), and replies splice the stored text into theirs. No Django, no I/O.
"""

from __future__ import annotations

import json
import time
from typing import Any

from realtime.core.users import user_id_json


def now_ms() -> int:
    """Milliseconds since the Unix epoch (the `ts` of a publication)."""
    return int(time.time() * 1000)


def publication_parts(channel: str, data: Any, user: Any, ts: int) -> tuple[str, str]:
    """The JSON text of a publication around its position: `head + '"epoch":..,"offset":..' + tail`.

    `data` is serialised here, once; the backend only splices in the position. `user` is the
    publisher's primary key (None: the server), written as `realtime.core.users` says: an
    integer as a JSON number, anything else (a UUID, a string) as a JSON string.
    """
    head = '{"channel":' + json.dumps(channel) + ","
    tail = (
        ',"data":'
        + json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        + ',"user":'
        + user_id_json(user)
        + ',"ts":'
        + str(ts)
        + "}"
    )
    return head, tail


def splice_position(head: str, epoch: str, offset: int, tail: str) -> str:
    """The publication text with its position in place."""
    return f'{head}"epoch":"{epoch}","offset":{offset}{tail}'


# ---------------------------------------------------------------- fan-out events
#
# What a process hears on a channel (the engine sends it; `realtime.pubsub.hub` reads it):
#   m<epoch> <offset> <ts> <message frame>     a publication, its `message` frame serialised once
#   p<JSON {"joined": [...], "left": [...]}>   users joined or left (presence)
#   c<JSON {"do": ..., ...}>                     a control event (on CONTROL_TOPIC only: realtime.sessions.control)

PUBLICATION_EVENT = "m"
PRESENCE_EVENT = "p"
CONTROL_EVENT = "c"
# The one topic of control events (revocations, admin actions, room removals, session takeovers): every
# process hears it once per event loop. Not a channel name (CHANNEL_RE has no "!"), so no client can
# subscribe to it or publish on it, and the delivery check leaves it alone.
CONTROL_TOPIC = "!control"
# What a control event does (its "do"): realtime.sessions.control sends them, realtime.pubsub.switchboard
# and the consumer act on them.
CONTROL_DISCONNECT = "disconnect"
CONTROL_CHANNEL_END = "end"
CONTROL_PING = "ping"


def control_event(event: dict) -> str:
    """The fan-out text of a control event."""
    return CONTROL_EVENT + json.dumps(event, separators=(",", ":"))


def message_frame(publication_text: str) -> str:
    """The `message` push of a stored publication: its JSON with `"type"` in front."""
    return '{"type":"message",' + publication_text[1:]


def publication_event(epoch: str, offset: int, ts: int, text: str) -> str:
    """The fan-out event of a stored publication: its position, its `ts`, its `message` frame."""
    return f"{PUBLICATION_EVENT}{epoch} {offset} {ts} {message_frame(text)}"


def ts_of(head: str, tail: str) -> int:
    """The `ts` that `publication_parts` put at the end of `tail`."""
    return int(tail[tail.rindex(":") + 1 : -1])
