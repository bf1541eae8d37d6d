from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from collector.models import ApiKey


class KeyForWritesKeyOrStaffForReads(BasePermission):
    """Every write needs an API key; reads take an API key or a staff session (the admin's login)."""

    message = "Writes need an API key: send 'Authorization: Bearer <key>'."

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, ApiKey):
            return True
        if request.method in SAFE_METHODS:
            return bool(request.user and request.user.is_staff)
        return False
