"""A tiny blocking HTTP client for the end-to-end tests: cookies, JSON, forms, the admin login.

Plain `http.client` (the project does not depend on requests): no proxies, no
redirect following (a test looks at the 302 itself). Run it off the event loop
with `asyncio.to_thread`.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode, urlsplit

TIMEOUT = 15.0  # a bound on one request, never a measurement
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Response:
    """Status, headers (lower-case names, last value wins) and body of one response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return jsonlib.loads(self.body)


@dataclass
class HttpSession:
    """Requests to one server (`base_url` like `http://127.0.0.1:8000`) that keep the cookies they get."""

    base_url: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One request; `json` or `form` (a dict, lists for repeated fields) becomes the body."""
        parts = urlsplit(self.base_url)
        headers = dict(headers or {})
        body = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers)
            raw = conn.getresponse()
            data = raw.read()
            for header in raw.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(header).items():
                    self.cookies[name] = morsel.value
            return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Response:
        """GET `path`."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        """POST `path` (with `json=` or `form=`)."""
        return self.request("POST", path, **kwargs)

    def csrf_token(self, path: str) -> str:
        """The CSRF form token of the page at `path` (GET it; the cookie comes along)."""
        page = self.get(path)
        assert page.status == 200, (path, page.status, page.body[:300])
        match = CSRF_INPUT.search(page.body.decode())
        assert match, f"no csrfmiddlewaretoken on {path}"
        return match.group(1)

    def admin_login(self, username: str, password: str) -> None:
        """Log in to the Django admin like a browser: GET the form, POST it, expect the redirect."""
        token = self.csrf_token("/admin/login/")
        response = self.post(
            "/admin/login/?next=/admin/",
            form={"csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/"},
        )
        assert response.status == 302, (response.status, response.body[:500])
        assert "sessionid" in self.cookies, self.cookies

    def admin_action(self, changelist: str, action: str, pks: list[int]) -> Response:
        """Run a changelist action (e.g. on `/admin/realtime/connection/`) on the rows `pks`."""
        token = self.csrf_token(changelist)
        return self.post(
            changelist,
            form={
                "csrfmiddlewaretoken": token,
                "action": action,
                "_selected_action": [str(pk) for pk in pks],
                "index": "0",
                "select_across": "0",
            },
        )


def logout(base_url: str, access: str, refresh: str) -> int:
    """`POST /api/auth/logout/` with the access token; returns the status (204 on success)."""
    response = HttpSession(base_url).post(
        "/api/auth/logout/", json={"refresh": refresh}, headers={"Authorization": f"Bearer {access}"}
    )
    return response.status
