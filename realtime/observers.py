"""Model changes published on commit (INTEGRATION.md section 6).

    from realtime.observers import observe

    observe(Note, channel=lambda note: f"user:{note.owner_id}")
    observe(Order, channel=..., data=lambda order, event: {...}, events=("created", "updated"))

Call `observe` once at start-up (an `AppConfig.ready`). After the transaction that saved or
deleted an instance commits, each of its model's observers publishes, once per instance:

    {"event": "created" | "updated" | "deleted", "model": "<app_label>.<model_name>", "pk": <pk>, "data": <data>}

with `realtime.publish.publish_sync`, so through history like any publication: a client that
was away recovers the change by offset.

- `data` is the instance's concrete fields by name, as JSON the way Django's `DjangoJSONEncoder`
  writes them (dates ISO strings, foreign keys their ids, UUIDs and decimals strings), or what
  `data(instance, event)` returns. It is taken when the change is made (a snapshot, called with
  that change's event), not at commit, when a deleted row is gone.
- `channel(instance)` names the channel (for a delete, the instance as it was); None publishes
  nothing for that instance.
- The changes of one transaction fold into one publication per instance: created then updated
  is "created" with the latest data, updated then deleted "deleted", created then deleted
  nothing at all. A transaction that rolls back publishes nothing, and a savepoint that rolls
  back takes its own changes out of the fold. Without a transaction (autocommit) each save
  publishes at once. `events` filters what is left after the fold.
- A publication that fails (Redis down, a channel of no namespace) is logged on this module's
  logger and never raised into the code that committed; so is an observer whose `channel` or
  `data` raises (its change is not published): an observer must not break the code that saves.

`QuerySet.update()`, `bulk_create()` and `bulk_update()` send no model signals, so observers
never see their changes: call `publish_change(instance, event)` for each instance they changed
(re-read after an `update()`; `bulk_create` returns its instances). It is published on commit
and folded like a save. A `QuerySet.delete()` does send `post_delete` for an observed model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from django.core.serializers.json import DjangoJSONEncoder
from django.db import router, transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from .publish import publish_sync

logger = logging.getLogger(__name__)

Event = Literal["created", "updated", "deleted"]
EVENTS: tuple[Event, ...] = ("created", "updated", "deleted")

# One receiver per model and signal, whatever the number of its observers (Django keys a
# dispatch_uid by sender too): observing a model again never makes it publish twice.
DISPATCH_UID = "realtime.observers"


@dataclass(frozen=True, eq=False)
class Observer:
    """One `observe()` registration: the model, where to publish, what, and after which events."""

    model: type[Model]
    channel: Callable[[Any], str | None]
    data: Callable[[Any, str], Any] | None
    events: frozenset[str]

    def change(self, instance: Model, event: Event) -> _Change:
        """The change as this observer publishes it, its channel and data taken now."""
        channel = self.channel(instance)
        data = None
        if channel is not None:
            data = _as_json(fields_of(instance) if self.data is None else self.data(instance, event))
        return _Change(self, instance.pk, event, channel, data)


@dataclass(frozen=True)
class _To:
    """A fixed channel as an observer's `channel` (`publish_change(..., channel=...)`); equal by name."""

    name: str

    def __call__(self, instance: Model) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class _Change:
    """One save or delete of an instance, as one observer saw it."""

    observer: Observer
    pk: Any
    event: Event
    channel: str | None
    data: Any


_observers: dict[type[Model], dict[Callable[[Any], str | None], Observer]] = {}


def observe(
    model: type[Model],
    *,
    channel: Callable[[Any], str | None],
    data: Callable[[Any, str], Any] | None = None,
    events: Iterable[Event] = EVENTS,
) -> Observer:
    """Publish the changes of `model`'s instances to `channel(instance)` on commit.

    Observing the same model with the same `channel` function again replaces the earlier
    registration (its `data` and `events`) rather than adding a second one.
    """
    events = frozenset(events)
    if unknown := events - set(EVENTS):
        raise ValueError(f"Unknown events {sorted(unknown)}; expected some of {list(EVENTS)}.")
    observer = Observer(model, channel, data, events)
    _observers.setdefault(model, {})[channel] = observer
    post_save.connect(_saved, sender=model, dispatch_uid=DISPATCH_UID)
    post_delete.connect(_deleted, sender=model, dispatch_uid=DISPATCH_UID)
    return observer


def unobserve(model: type[Model]) -> None:
    """Forget every observer of `model` (tests; otherwise observers last as long as the process)."""
    _observers.pop(model, None)
    post_save.disconnect(sender=model, dispatch_uid=DISPATCH_UID)
    post_delete.disconnect(sender=model, dispatch_uid=DISPATCH_UID)


def publish_change(instance: Model, event: Event, *, channel: str | None = None, using: str | None = None) -> None:
    """Publish a change that sent no model signal (`update()`, `bulk_create()`), on commit.

    Without `channel`, as the model's observers publish a save or delete (ValueError if it
    has none); with one, to that channel with the default data. `using`: the database whose
    transaction it belongs to (by default the instance's, or the router's for writes).
    """
    if event not in EVENTS:
        raise ValueError(f"Unknown event {event!r}; expected one of {list(EVENTS)}.")
    model = type(instance)
    if channel is not None:
        observers = [Observer(model, _To(channel), None, frozenset(EVENTS))]
    elif not (observers := list(_observers.get(model, {}).values())):
        raise ValueError(f"{model._meta.label} is not observed: call observe() for it, or pass `channel`.")
    _record(instance, event, using or router.db_for_write(model, instance=instance), observers)


def fields_of(instance: Model) -> dict[str, Any]:
    """The instance's concrete fields by name (a foreign key: the related id), as Python values."""
    return {field.name: field.value_from_object(instance) for field in instance._meta.concrete_fields}


def _as_json(value: Any) -> Any:
    """`value` as plain JSON data (a copy): what DjangoJSONEncoder writes, read back."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False))


def _saved(sender: type[Model], instance: Model, created: bool, using: str, **kwargs: Any) -> None:
    _record(instance, "created" if created else "updated", using, _observers.get(sender, {}).values())


def _deleted(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    _record(instance, "deleted", using, _observers.get(sender, {}).values())


def _record(instance: Model, event: Event, using: str, observers: Iterable[Observer]) -> None:
    """Take each observer's change now, to publish when the transaction commits."""
    changes = []
    for observer in observers:
        try:
            changes.append(observer.change(instance, event))
        except Exception:
            logger.exception(
                "observer of %s failed on %s pk=%r: not published", observer.model._meta.label, event, instance.pk
            )
    if changes:
        _on_commit(changes, using)


class _Batch:
    """One transaction's changes, folded per observer and instance as they commit, then published."""

    def __init__(self) -> None:
        # (model, channel function, pk): an instance as one observer sees it (a model has one per
        # channel function) -> (the first event of the instance in the transaction, its latest change)
        self._net: dict[tuple[type[Model], Callable[[Any], str | None], Any], tuple[Event, _Change]] = {}

    def add(self, changes: list[_Change]) -> None:
        for change in changes:
            key = (change.observer.model, change.observer.channel, change.pk)
            first = self._net[key][0] if key in self._net else change.event
            self._net[key] = (first, change)

    def publish(self) -> None:
        net, self._net = self._net, {}
        for first, change in net.values():
            event = _net_event(first, change.event)
            if event in change.observer.events and change.channel is not None:
                _publish(change, event)


def _net_event(first: Event, last: Event) -> Event | None:
    """What a transaction did to a row, from the first and the last of its changes there."""
    existed, exists = first != "created", last != "deleted"
    if existed:
        return "updated" if exists else "deleted"
    return "created" if exists else None


def _publish(change: _Change, event: Event) -> None:
    model = change.observer.model._meta.label_lower
    payload = {"event": event, "model": model, "pk": _as_json(change.pk), "data": change.data}
    try:
        publish_sync(change.channel, payload)
    except Exception:  # committed already: the caller must not see it fail
        logger.exception("could not publish %s of %s pk=%r to %s", event, model, payload["pk"], change.channel)


def _on_commit(changes: list[_Change], using: str) -> None:
    """Publish `changes` when the transaction on `using` commits, folded with its other changes.

    Each change is recorded by an on_commit hook of its own, so Django drops it with the
    savepoint it was made in if that rolls back; which changes survived is known only when the
    hooks run, at commit, in the order they were registered. So one more hook per transaction
    publishes the batch, and it is kept last in `connection.run_on_commit` (a list of
    `(savepoint ids, callback, robust)`, read the same way by Django's
    `TestCase.captureOnCommitCallbacks`): each change moves it from where it stands to behind
    its own hook, keeping the savepoints it was registered in. That is enough: a savepoint
    that rolls it back later was open at this change too, so it takes this change with it. Once
    a savepoint has taken it, none of the changes before it is left, and a new batch begins.
    """
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:  # autocommit: on_commit runs it now (and refuses manual transactions)
        batch = _Batch()
        batch.add(changes)
        transaction.on_commit(batch.publish, using=using, robust=True)
        return
    hooks = connection.run_on_commit
    at = len(hooks) - 1  # it was last at the previous change; others' hooks may have come since
    while at >= 0 and not _publishes(hooks[at]):
        at -= 1
    publisher = hooks.pop(at) if at >= 0 else None
    batch = _Batch() if publisher is None else publisher[1].__self__

    def committed() -> None:
        batch.add(changes)

    connection.on_commit(committed, robust=True)
    if publisher is None:
        connection.on_commit(batch.publish, robust=True)
    else:
        hooks.append(publisher)


def _publishes(hook: tuple[set[str | None], Callable[[], None], bool]) -> bool:
    return getattr(hook[1], "__func__", None) is _Batch.publish
