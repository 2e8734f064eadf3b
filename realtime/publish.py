"""Publishing from the project's own code (INTEGRATION.md section 5).

    from realtime.publish import publish, publish_sync
    publish_sync("user:7", {"unread": 3})        # a view, a signal, a Celery task, a shell
    await publish("room:kitchen", {"text": "hi"})

Both return the publication's position (`Published`: epoch and offset). The work is done in
`realtime.pubsub.publishing`; this module is the name the contract promises.
"""

from realtime.pubsub.publishing import publish, publish_sync

__all__ = ["publish", "publish_sync"]
