"""Web sessions in a signed cookie, and the CSRF token every form carries.

Why a signed cookie and not a server-side session row: it needs no table, no migration, no write per login and no
janitor for abandoned rows, and every API process (local or behind a balancer) reads it alike, given one key. What
a row would add is revocation, and the cookie gets that from the account itself: it holds the user's id and a
fingerprint of their current API token, so regenerating the token (or an admin resetting it) ends every web session
at once. The cookie never holds the token, so a leaked cookie is not an API credential.

The cookie is HttpOnly (no script reads it), SameSite=Lax (no cross-site POST carries it) and Secure behind HTTPS.
CSRF: a random token lives in the signed session and in every form (or the `X-CSRF-Token` header of the page's own
requests); a POST whose token does not match changes nothing. A visitor who is not logged in has a session too, so
the login and register forms are protected as well; the token changes at login and logout.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from openmvsep.settings import Settings
from openmvsep.store.models import User

COOKIE = "openmvsep_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_SALT = "openmvsep.web.session"


def fingerprint(api_token: str) -> str:
    """What the cookie keeps of the token: enough to notice a new one, useless as a credential."""
    return hashlib.sha256(api_token.encode()).hexdigest()[:16]


def secret_key(settings: Settings) -> str:
    """`web_secret`, or a random key made once and kept in the data directory (shared by this machine's
    processes: the first to start writes it, the others read it)."""
    if settings.web_secret:
        return settings.web_secret
    path = Path(settings.data_dir) / "web-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text("utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(32))
    return path.read_text("utf-8").strip()


@dataclass
class Visit:
    """One browser's session on this request: its CSRF token and, when logged in, its account."""

    csrf: str
    user: User | None = None
    changed: bool = False  # the cookie must be (re)sent

    @property
    def token(self) -> str | None:
        """The API token the services take as the caller's identity (never sent to the browser)."""
        return self.user.api_token if self.user is not None else None

    def log_in(self, user: User) -> None:
        self.user, self.csrf, self.changed = user, secrets.token_urlsafe(24), True

    def log_out(self) -> None:
        self.user, self.csrf, self.changed = None, secrets.token_urlsafe(24), True

    def csrf_matches(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf)


class Sessions:
    def __init__(self, settings: Settings, find_user):
        """`find_user(user_id)`: the account while it may log in, else None (AccountService.signed_in)."""
        self.settings = settings
        self.max_age = int(settings.web_session_hours * 3600)
        self.secure = settings.effective_public_url.startswith("https://")
        self.find_user = find_user
        self._serializer: URLSafeTimedSerializer | None = None

    @property
    def serializer(self) -> URLSafeTimedSerializer:
        if self._serializer is None:  # on first use: the data directory may not exist before start-up
            self._serializer = URLSafeTimedSerializer(secret_key(self.settings), salt=_SALT)
        return self._serializer

    def load(self, request: Request) -> Visit:
        cached = request.scope.get("openmvsep.visit")
        if cached is not None:
            return cached
        visit = self._read(request.cookies.get(COOKIE))
        request.scope["openmvsep.visit"] = visit
        return visit

    def _read(self, cookie: str | None) -> Visit:
        fresh = Visit(csrf=secrets.token_urlsafe(24), changed=True)
        if not cookie or len(cookie) > 4096:
            return fresh
        try:
            data = self.serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:  # also an expired one (SignatureExpired is a BadSignature)
            return fresh
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return fresh
        visit = Visit(csrf=data["c"])
        user_id, print_ = data.get("u"), data.get("t")
        if isinstance(user_id, int) and isinstance(print_, str):
            user = self.find_user(user_id)
            if user is not None and hmac.compare_digest(fingerprint(user.api_token), print_):
                visit.user = user
            else:  # the account is gone, disabled or has a new token: logged out, the cookie says so
                visit.changed = True
        return visit

    def save(self, response: Response, visit: Visit) -> None:
        if not visit.changed:
            return
        data: dict = {"c": visit.csrf}
        if visit.user is not None:
            data.update(u=visit.user.id, t=fingerprint(visit.user.api_token))
        response.set_cookie(
            COOKIE,
            self.serializer.dumps(data),
            max_age=self.max_age,
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path="/",
        )
