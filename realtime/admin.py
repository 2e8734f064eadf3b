"""Admin pages of the real-time engine: rooms, socket sessions (with live controls), server processes.

And the token blacklist's admins without the token text (`realtime.auth.token_admin`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import urlencode

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename, get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime
from django.views.decorators.http import require_POST

from realtime.core.protocol import CloseCode
from realtime.models import Connection, Membership, Node, Room
from realtime.runtime.node import STALE_CODE, STALE_REASON, stale_cutoff
from realtime.sessions.control import disconnect_channels_sync

logger = logging.getLogger(__name__)

if apps.is_installed("rest_framework_simplejwt.token_blacklist"):  # (without it: realtime.E001)
    from realtime.auth import token_admin  # noqa: F401 - replaces simplejwt's token admins
SESSION_PREFIX = 10  # characters of a session id in the list: `s_` and 8 hex digits


class MembershipInline(admin.TabularInline):
    """A room's members, one row each (`Room.members` has a declared through model: `Membership`)."""

    model = Membership
    extra = 1
    # A search box where the user model's admin can answer it (`get_autocomplete_fields`), else an id
    # field: a static `autocomplete_fields` fails `check` (admin.E039) when a project leaves its custom
    # user unregistered, and a plain select would list every user.
    raw_id_fields = ("user",)
    verbose_name = "member"
    verbose_name_plural = "members"

    def get_autocomplete_fields(self, request: HttpRequest) -> tuple[str, ...]:
        user_admin = self.admin_site._registry.get(get_user_model())
        return ("user",) if user_admin is not None and user_admin.search_fields else ()


def username_lookup(relation: str) -> str:
    """The search lookup of a related user's name: `<relation>__<USERNAME_FIELD>` (`email`, say)."""
    return f"{relation}__{get_user_model().USERNAME_FIELD}"


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms with their members."""

    list_display = ("slug", "name", "member_count", "created_at")
    search_fields = ("slug", "name")  # and the members' names (`get_search_fields`)
    inlines = (MembershipInline,)
    prepopulated_fields = {"slug": ("name",)}

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (*self.search_fields, username_lookup("members"))

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_total=Count("members"))

    @admin.display(description="members", ordering="member_total")
    def member_count(self, room: Room) -> int:
        return room.member_total


def close_code_label(code: int) -> str:
    """`4503` -> `"4503 forbidden"`; a code outside the protocol table keeps just its number."""
    if code == STALE_CODE:
        return f"{code} {STALE_REASON}"
    try:
        return f"{code} {CloseCode(code).reason}"
    except ValueError:
        return str(code)


def compact_time(value: datetime) -> str:
    """`2026-12-02 04:38:05` in the current time zone: a list column, narrower than the locale's long form."""
    return date_format(localtime(value), "Y-m-d H:i:s")


class OpenFilter(admin.SimpleListFilter):
    """Open sessions (`closed_at` is null) or closed ones."""

    title = "state"
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return (("yes", "open"), ("no", "closed"))

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(closed_at__isnull=self.value() == "yes")
        return queryset


class CloseCodeFilter(admin.SimpleListFilter):
    """The close codes present, labelled with their reasons."""

    title = "close code"
    parameter_name = "close_code"

    def lookups(self, request, model_admin):
        codes = Connection.objects.exclude(close_code=None).order_by().values_list("close_code", flat=True).distinct()
        return [(str(code), close_code_label(code)) for code in sorted(codes)]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(close_code=int(value)) if value.isdigit() else queryset.none()


class RecordAdmin(admin.ModelAdmin):
    """Records the server writes, not forms: read-only detail pages, no add, delete for superusers."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # False makes the detail page read-only (view permission, or the change one, still shows it).
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser


@admin.register(Connection)
class ConnectionAdmin(RecordAdmin):
    """Socket sessions: records to inspect, never to edit; open ones can be told to close.

    The "change" permission on Connection is what allows the live controls (disconnect,
    force reconnect); the rows themselves stay read-only for everyone.
    """

    # Fits a 1280 px screen next to the filters: who, state, when, how it ended, where, how it
    # authenticated. The address, user agent, token expiry and refresh count are on the detail page.
    list_display = ("session", "user", "state", "opened", "ended", "close", "node", "auth")
    list_display_links = ("session",)
    list_filter = (
        OpenFilter,
        ("user", admin.RelatedOnlyFieldListFilter),
        "node",
        CloseCodeFilter,
        "auth_method",
        "resumed",
    )
    search_fields = ("session_id", "remote_addr")  # and the user's name (`get_search_fields`)
    list_select_related = ("user",)
    show_full_result_count = False  # the table holds SESSION_RETENTION worth of rows: spare a COUNT(*)
    actions = ("disconnect", "force_reconnect")
    fieldsets = (
        (None, {"fields": ("session_id", "resumption", "user", "node", "channel_name")}),
        ("Client", {"fields": ("remote_addr", "user_agent", "auth_method")}),
        (
            "Lifetime",
            {
                "fields": (
                    "opened_at",
                    "authenticated_at",
                    "last_seen",
                    "closed_at",
                    "close_code",
                    "close_reason",
                    "token_expires_at",
                    "refresh_count",
                )
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        # `ended` sorts the "last seen / closed" column: the close when there is one, else the last beat.
        return super().get_queryset(request).annotate(ended_at=Coalesce("closed_at", "last_seen"))

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (username_lookup("user"), *self.search_fields)

    def changelist_view(self, request, extra_context=None):
        # Without the app sidebar (the breadcrumbs lead back): the table and its filters get the width.
        extra_context = {**(extra_context or {}), "is_nav_sidebar_enabled": False}
        return super().changelist_view(request, extra_context)

    @admin.display(description="session", ordering="session_id")
    def session(self, connection: Connection) -> str:
        """The id's start (enough to tell rows apart and to search by); the whole id on hover."""
        short = connection.session_id[:SESSION_PREFIX]
        suffix = "…" if len(connection.session_id) > SESSION_PREFIX else ""
        return format_html('<span title="{}">{}{}</span>', connection.session_id, short, suffix)

    @admin.display(description="resumed")
    def resumption(self, connection: Connection) -> str:
        """In words, once: the model field's help text under a ✗ read as the opposite of the icon."""
        return "yes: this socket resumed an earlier session" if connection.resumed else "no: a new session"

    @admin.display(description="state", ordering="closed_at")
    def state(self, connection: Connection) -> str:
        return "open" if connection.is_open else "closed"

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, connection: Connection) -> str:
        return compact_time(connection.opened_at)

    @admin.display(description="last seen / closed", ordering="ended_at")
    def ended(self, connection: Connection) -> str:
        """Open: the process's last beat for the socket; closed: when it closed."""
        return compact_time(connection.closed_at or connection.last_seen)

    @admin.display(description="close", ordering="close_code")
    def close(self, connection: Connection) -> str:
        """`4503 session_expired`: the code and the reason the server sent (the code's own reason when none)."""
        if connection.close_code is None:
            return self.get_empty_value_display()
        if connection.close_reason:
            return f"{connection.close_code} {connection.close_reason}"
        return close_code_label(connection.close_code)

    @admin.display(description="auth", ordering="auth_method")
    def auth(self, connection: Connection) -> str:
        """The short name (`header`, `query`, `cookie`, `frame`); the long one on hover."""
        if not connection.auth_method:
            return self.get_empty_value_display()
        return format_html('<span title="{}">{}</span>', connection.get_auth_method_display(), connection.auth_method)

    def has_control_permission(self, request: HttpRequest) -> bool:
        """Staff with the change permission on Connection may disconnect live sockets."""
        codename = get_permission_codename("change", self.opts)
        return request.user.is_active and request.user.is_staff and request.user.has_perm(f"realtime.{codename}")

    # -- live controls: actions on the list, buttons on the detail page

    @admin.action(description="Disconnect selected sockets (4503 forbidden: the client stops)", permissions=["control"])
    def disconnect(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        self.tell(request, queryset, CloseCode.FORBIDDEN)

    @admin.action(
        description="Force selected sockets to reconnect (4011 force_reconnect: the client resumes)",
        permissions=["control"],
    )
    def force_reconnect(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        self.tell(request, queryset, CloseCode.FORCE_RECONNECT)

    def tell(self, request: HttpRequest, queryset: QuerySet[Connection], code: CloseCode) -> int:
        """Send a disconnect control event to the open rows' sockets; report; return how many."""
        rows = list(queryset.order_by().values_list("channel_name", "closed_at"))
        channels = [name for name, closed_at in rows if closed_at is None and name]
        closed = sum(1 for _, closed_at in rows if closed_at is not None)
        unreachable = len(rows) - closed - len(channels)
        label = close_code_label(code)
        try:
            told = disconnect_channels_sync(channels, code) if channels else 0
        except Exception as exc:  # the engine (Redis) is down: say so rather than a 500
            logger.exception("admin %s: could not send %s to %d socket(s)", request.user, label, len(channels))
            self.message_user(
                request, f"Could not send the control event ({type(exc).__name__}); nobody was told.", messages.ERROR
            )
            return 0
        parts = [f"Told {told} open connection(s) to close with {label}."]
        if closed:
            parts.append(f"{closed} selected connection(s) were already closed.")
        if unreachable:
            parts.append(f"{unreachable} open connection(s) have no address and could not be told.")
        self.message_user(request, " ".join(parts), messages.SUCCESS if told else messages.WARNING)
        return told

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        controls = [
            path(
                "<path:object_id>/disconnect/",
                self.admin_site.admin_view(require_POST(self.disconnect_view)),
                name="{}_{}_disconnect".format(*info),
            ),
            path(
                "<path:object_id>/force-reconnect/",
                self.admin_site.admin_view(require_POST(self.force_reconnect_view)),
                name="{}_{}_force_reconnect".format(*info),
            ),
        ]
        # Before the default URLs: their `<path:object_id>/` catch-all would take these.
        return controls + super().get_urls()

    def disconnect_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: the detail page's "Disconnect" button (4503)."""
        return self._control_view(request, object_id, CloseCode.FORBIDDEN)

    def force_reconnect_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: the detail page's "Force reconnect" button (4011)."""
        return self._control_view(request, object_id, CloseCode.FORCE_RECONNECT)

    def _control_view(self, request: HttpRequest, object_id: str, code: CloseCode) -> HttpResponse:
        if not self.has_control_permission(request):
            raise PermissionDenied
        connection = self.get_object(request, unquote(object_id))
        if connection is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        self.tell(request, Connection.objects.filter(pk=connection.pk), code)
        return HttpResponseRedirect(
            reverse("admin:realtime_connection_change", args=[connection.pk], current_app=self.admin_site.name)
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_control": self.has_control_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Node)
class NodeAdmin(RecordAdmin):
    """Server processes and their liveness; rows come and go with the processes."""

    list_display = ("name", "hostname", "pid", "started_at", "last_seen", "alive", "open_connections")
    search_fields = ("name", "hostname")

    def get_queryset(self, request):
        # Connection.node is a plain name, not a foreign key: count through a subquery.
        open_rows = (
            Connection.objects.filter(node=OuterRef("name"), closed_at__isnull=True)
            .order_by()
            .values("node")
            .annotate(total=Count("pk"))
            .values("total")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(open_total=Coalesce(Subquery(open_rows, output_field=IntegerField()), 0))
        )

    @admin.display(description="alive", boolean=True, ordering="last_seen")
    def alive(self, node: Node) -> bool:
        return node.last_seen >= stale_cutoff()

    @admin.display(description="open connections", ordering="open_total")
    def open_connections(self, node: Node) -> str:
        url = reverse("admin:realtime_connection_changelist", current_app=self.admin_site.name)
        query = urlencode({"node": node.name, "open": "yes"})
        return format_html('<a href="{}?{}">{}</a>', url, query, node.open_total)
