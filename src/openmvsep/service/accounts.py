"""Accounts: registration, login, API tokens, profile flags and the credits ledger."""

from __future__ import annotations

import functools
import re
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openmvsep.service.errors import InvalidToken, ServiceError, ValidationFailed
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import CreditEntry, User

TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 30  # MVSep's length; some clients only accept a saved token of exactly 30 characters
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()


def new_token() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash no password matches (made once per process, with the same parameters as real ones)."""
    return hash_password(secrets.token_urlsafe(32))


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def validate_registration(s: Session, name: str, email: str, password: str, confirmation: str | None) -> None:
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors.setdefault("name", []).append("The name field is required.")
    elif len(name) > 255:
        errors.setdefault("name", []).append("The name may not be greater than 255 characters.")
    if not email:
        errors.setdefault("email", []).append("The email field is required.")
    elif len(email) > 255 or not _EMAIL.match(email):
        errors.setdefault("email", []).append("The email must be a valid email address.")
    elif s.scalar(select(User.id).where(func.lower(User.email) == email.lower())) is not None:
        errors.setdefault("email", []).append("The email has already been taken.")
    if not password:
        errors.setdefault("password", []).append("The password field is required.")
    elif len(password) < 8:
        errors.setdefault("password", []).append("The password must be at least 8 characters.")
    elif len(password) > 1024:
        errors.setdefault("password", []).append("The password may not be greater than 1024 characters.")
    elif confirmation is not None and confirmation != password:
        errors.setdefault("password", []).append("The password confirmation does not match.")
    if errors:
        raise ValidationFailed(errors)


def create_user(
    s: Session,
    *,
    email: str,
    password: str,
    name: str = "",
    credits: int = 0,
    premium: bool = False,
    confirmation: str | None = None,
    require_name: bool = False,
) -> User:
    """A new account with a fresh API token; `require_name` for the public register form."""
    if not require_name:
        name = name or email.split("@")[0]
    validate_registration(s, name, email, password, confirmation)
    now = utcnow()
    user = User(
        name=name,
        email=email,
        password_hash=hash_password(password),
        api_token=new_token(),
        credits=0,
        premium_enabled=premium,
        long_filenames_enabled=False,
        is_admin=False,
        credit_alert_threshold=0,
        created_at=now,
        updated_at=now,
    )
    s.add(user)
    s.flush()
    if credits:
        change_credits(s, user, credits, "grant")
    return user


def login(s: Session, email: str, password: str) -> User:
    errors: dict[str, list[str]] = {}
    if not email:
        errors["email"] = ["The email field is required."]
    if not password:
        errors["password"] = ["The password field is required."]
    if errors:
        raise ValidationFailed(errors)
    user = s.scalar(select(User).where(func.lower(User.email) == email.lower()))
    # An unknown address costs the same argon2 verification as a known one, so that the answer's timing does not
    # tell which addresses have accounts.
    if not password_matches(user.password_hash if user is not None else _dummy_hash(), password) or user is None:
        raise ValidationFailed({"email": ["These credentials do not match our records."]})
    return user


def user_by_token(s: Session, token: str | None) -> User | None:
    if not token or len(token) > 64:
        return None
    return s.scalar(select(User).where(User.api_token == token))


def require_user(s: Session, token: str | None, *, status: int = 401) -> User:
    user = user_by_token(s, token)
    if user is None:
        raise InvalidToken("Invalid API key" if token else "api_token is required", status=status)
    return user


def change_credits(s: Session, user: User, delta: int, reason: str, job_id: int | None = None) -> None:
    """Every change of a balance is a ledger row written in the caller's transaction."""
    user.credits += delta
    user.updated_at = utcnow()
    s.add(CreditEntry(user_id=user.id, job_id=job_id, delta=delta, reason=reason, created_at=utcnow()))


def set_flag(s: Session, user: User, flag: str, value: bool) -> None:
    assert flag in ("premium_enabled", "long_filenames_enabled")
    setattr(user, flag, value)
    user.updated_at = utcnow()


def user_payload(user: User) -> dict:
    """The `data` object of app/login and app/user (0/1 integers for flags, as MVSep sends)."""
    return {
        "name": user.name,
        "email": user.email,
        "api_token": user.api_token,
        "created_at": fmt_datetime(user.created_at),
        "updated_at": fmt_datetime(user.updated_at),
        "premium_minutes": user.credits,
        "premium_enabled": int(user.premium_enabled),
        "long_filenames_enabled": int(user.long_filenames_enabled),
    }


def fmt_datetime(value) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else None


class AccountService:
    """What the account endpoints do, each in its own transaction."""

    def __init__(self, db: Database, settings: Settings):
        self.db, self.settings = db, settings

    def login(self, email: str, password: str) -> dict:
        with self.db.session() as s:
            return user_payload(login(s, email.strip(), password))

    def register(self, *, email: str, password: str, name: str, confirmation: str | None) -> None:
        if not self.settings.registration_open:
            raise ServiceError("Registration is closed on this server", status=403)
        with self.db.session() as s:
            create_user(
                s,
                email=email,
                password=password,
                name=name,
                credits=self.settings.new_user_credits,
                confirmation=confirmation,
                require_name=True,
            )

    def create(self, *, email: str, password: str, name: str = "", credits: int = 0, premium: bool = False) -> User:
        """An account made by an admin (`openmvsep user create`)."""
        with self.db.session() as s:
            return create_user(s, email=email, password=password, name=name, credits=credits, premium=premium)

    def all(self) -> list[User]:
        with self.db.reader() as s:
            return list(s.scalars(select(User).order_by(User.id)))

    def require(self, token: str | None, *, status: int = 401) -> User:
        with self.db.reader() as s:
            return require_user(s, token, status=status)

    def set_flag(self, token: str | None, flag: str, value: bool) -> None:
        with self.db.session() as s:
            set_flag(s, require_user(s, token, status=400), flag, value)

    def set_credit_alert(self, token: str | None, threshold: int) -> None:
        with self.db.session() as s:
            require_user(s, token, status=400).credit_alert_threshold = threshold
