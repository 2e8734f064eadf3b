"""Admin pages of the real-time engine."""

from django.contrib import admin
from django.db.models import Count

from .models import Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms with their members."""

    list_display = ("slug", "name", "member_count", "created_at")
    search_fields = ("slug", "name", "members__username")
    filter_horizontal = ("members",)
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_total=Count("members"))

    @admin.display(description="members", ordering="member_total")
    def member_count(self, room: Room) -> int:
        return room.member_total
