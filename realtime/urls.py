"""URLs of the real-time HTTP API, mounted at /api/realtime/."""

from django.urls import path

from realtime.http import api

app_name = "realtime"

# `path:` so that every malformed channel name reaches the view and gets 400
# `bad_request` (with `str:` a name containing "/" would be a bare 404).
urlpatterns = [
    path("publish/", api.PublishView.as_view(), name="publish"),
    path("channels/<path:channel>/history/", api.HistoryView.as_view(), name="history"),
    path("channels/<path:channel>/presence/", api.PresenceView.as_view(), name="presence"),
    path("rooms/", api.RoomsView.as_view(), name="rooms"),
]
