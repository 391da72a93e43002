"""What the web page's tests share: reading a form's CSRF token, and registering through the page."""

from __future__ import annotations

import re

from conftest import Harness

PASSWORD = "correct horse 1"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def register(h: Harness, email: str = "ann@example.com") -> str:
    """Register and stay logged in; the CSRF token of the logged-in session."""
    token = csrf_of(h.client.get("/register").text)
    data = {"csrf_token": token, "name": "Ann", "email": email, "password": PASSWORD, "password_confirmation": PASSWORD}
    r = h.client.post("/register", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(h.client.get("/").text)
