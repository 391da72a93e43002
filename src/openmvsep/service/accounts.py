"""Accounts: registration, login, API tokens, profile flags and the credits ledger.

Password hashing (argon2, about 0.1 s of CPU) never runs inside a write transaction: on SQLite a write transaction
holds the database's one write lock, and every job create and worker claim would wait behind it. Login reads the
account, verifies outside any transaction, then writes briefly; register hashes before its short insert.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import string
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openmvsep.service import mail, throttle
from openmvsep.service.errors import InvalidToken, NotFound, ServiceError, ValidationFailed
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import CreditEntry, Invite, Job, User

TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 30  # MVSep's length; some clients only accept a saved token of exactly 30 characters
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()
# Characters no e-mail address or name needs: C0/C1 controls (NUL included), surrogates, private use, unassigned,
# line and paragraph separators; e-mails also refuse format characters (invisible: two addresses that look alike).
_NAME_REFUSED = {"Cc", "Cs", "Co", "Cn", "Zl", "Zp"}
_EMAIL_REFUSED = _NAME_REFUSED | {"Cf"}
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # turn a shown name around
TAKEN = "The email has already been taken."
DISABLED = "This account is disabled; ask the server's administrator."


@dataclass
class UserPage:
    """One page of the admin's user list."""

    users: list[User]
    total: int  # accounts matching the search
    page: int  # 1-based
    pages: int


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


def normalise_email(email: str) -> str:
    """The one form an address is stored and compared in: NFKC, then casefolded (not ASCII-only lowercasing, which
    is all SQLite's lower() does), so that `Éva@x.test` and `éva@x.test` are one account on every database."""
    return unicodedata.normalize("NFKC", email.strip()).casefold()


def _has_refused(text: str, refused: set[str]) -> bool:
    return any(unicodedata.category(c) in refused or c in _BIDI_CONTROLS for c in text)


@functools.lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = files("openmvsep.service").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().casefold() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def password_problem(password: str, *, min_length: int = 8, refuse_common: bool = False) -> str | None:
    """Why a new password is refused, or None."""
    if not password:
        return "The password field is required."
    if not password.strip():
        return "The password may not consist of spaces only."
    if len(password) < min_length:
        return f"The password must be at least {min_length} characters."
    if len(password) > 1024:
        return "The password may not be greater than 1024 characters."
    if refuse_common and (password.strip().casefold() in common_passwords() or len(set(password)) == 1):
        return "This password is one of the most common passwords; please choose another."
    return None


def validate_registration(
    s: Session,
    name: str,
    email: str,
    password: str,
    confirmation: str | None,
    *,
    min_length: int = 8,
    refuse_common: bool = False,
    stale_before=None,
) -> None:
    """`email` is already normalised; an unverified account made before `stale_before` does not hold its address."""
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors.setdefault("name", []).append("The name field is required.")
    elif len(name) > 255:
        errors.setdefault("name", []).append("The name may not be greater than 255 characters.")
    elif _has_refused(name, _NAME_REFUSED):
        errors.setdefault("name", []).append("The name may not contain control characters.")
    if not email:
        errors.setdefault("email", []).append("The email field is required.")
    elif _has_refused(email, _EMAIL_REFUSED):
        errors.setdefault("email", []).append("The email may not contain control characters.")
    elif len(email) > 255 or not _EMAIL.match(email):
        errors.setdefault("email", []).append("The email must be a valid email address.")
    elif _holder(s, email, stale_before) is not None:
        errors.setdefault("email", []).append(TAKEN)
    problem = password_problem(password, min_length=min_length, refuse_common=refuse_common)
    if problem:
        errors.setdefault("password", []).append(problem)
    elif confirmation is not None and confirmation != password:
        errors.setdefault("password", []).append("The password confirmation does not match.")
    if errors:
        raise ValidationFailed(errors)


def _holder(s: Session, email: str, stale_before) -> int | None:
    """The account that holds `email` (an unverified one past its link's life holds nothing)."""
    query = select(User.id).where(User.email == email)
    if stale_before is not None:
        query = query.where((User.email_verified.is_(True)) | (User.created_at >= stale_before))
    return s.scalar(query)


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
    password_hash: str | None = None,
) -> User:
    """A new account with a fresh API token (admins and tests; the public form goes through AccountService)."""
    email = normalise_email(email)
    if not require_name:
        name = name or email.split("@")[0]
    validate_registration(s, name, email, password, confirmation)
    user = new_user(name, email, password_hash or hash_password(password), premium=premium)
    s.add(user)
    s.flush()
    if credits:
        change_credits(s, user, credits, "grant")
    return user


def new_user(name: str, email: str, password_hash: str, *, premium: bool = False, **extra) -> User:
    now = utcnow()
    return User(
        name=name,
        email=email,
        password_hash=password_hash,
        api_token=new_token(),
        credits=0,
        premium_enabled=premium,
        long_filenames_enabled=False,
        is_admin=False,
        credit_alert_threshold=0,
        created_at=now,
        updated_at=now,
        **extra,
    )


def _credentials_refused() -> ValidationFailed:
    return ValidationFailed({"email": ["These credentials do not match our records."]})


def may_sign_in(user: User | None) -> bool:
    """Whether an account's token, password and web session work: verified, and not disabled by an admin."""
    return user is not None and user.email_verified and not user.disabled


def user_by_token(s: Session, token: str | None) -> User | None:
    if not token or len(token) > 64:
        return None
    user = s.scalar(select(User).where(User.api_token == token))
    return user if may_sign_in(user) else None


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


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccountService:
    """What the account endpoints do. Password work runs outside every transaction; writes are short."""

    def __init__(self, db: Database, settings: Settings):
        self.db, self.settings = db, settings

    # ---------------------------------------------------------------- login

    def login(self, email: str, password: str, address: str | None = None) -> dict:
        errors: dict[str, list[str]] = {}
        if not email.strip():
            errors["email"] = ["The email field is required."]
        if not password:
            errors["password"] = ["The password field is required."]
        if errors:
            raise ValidationFailed(errors)
        email = normalise_email(email)
        keys = [throttle.account_key(email, self.settings)]
        if address:
            keys.append(throttle.address_key(address, self.settings))
        throttle.check(self.db, keys)  # a blocked account or address costs no verification
        with self.db.reader() as s:
            user = s.scalar(select(User).where(User.email == email))
        # Outside any transaction. An unknown address costs the same argon2 verification as a known one, so that
        # the answer's timing does not tell which addresses have accounts.
        if not password_matches(user.password_hash if user is not None else _dummy_hash(), password) or user is None:
            throttle.record_failure(self.db, keys, self.settings)
            raise _credentials_refused()
        if not user.email_verified:
            raise ValidationFailed(
                {
                    "email": [
                        "This account's e-mail address is not verified yet: open the link "
                        "in the verification e-mail first."
                    ]
                }
            )
        if user.disabled:  # said only to whoever knows the password: it tells nobody else the account exists
            raise ValidationFailed({"email": [DISABLED]})
        rehashed = hash_password(password) if _hasher.check_needs_rehash(user.password_hash) else None
        with self.db.session() as s:  # short: no password work in here
            throttle.clear(s, keys[0])
            if rehashed is not None:  # only if nobody changed the hash meanwhile
                s.execute(
                    update(User)
                    .where(User.id == user.id, User.password_hash == user.password_hash)
                    .values(password_hash=rehashed)
                )
        return user_payload(user)

    def signed_in(self, user_id: int) -> User | None:
        """The account a web session names, while it may still log in (verified); None otherwise."""
        with self.db.reader() as s:
            user = s.get(User, user_id)
        return user if may_sign_in(user) else None

    # ---------------------------------------------------------------- registration

    def register(
        self, *, email: str, password: str, name: str, confirmation: str | None, address: str | None = None
    ) -> str:
        """A new account from the public form; returns the message to show (true to what happened)."""
        settings = self.settings
        policy = settings.registration_policy
        if policy == "closed":
            raise ServiceError("Registration is closed on this server", status=403)
        if policy == "verify" and not settings.smtp_host:
            raise ServiceError("Registration needs e-mail verification, but this server has no mail server", status=503)
        email = normalise_email(email)
        stale_before = utcnow() - timedelta(hours=settings.verification_hours)
        with self.db.reader() as s:
            validate_registration(
                s,
                name,
                email,
                password,
                confirmation,
                min_length=settings.password_min_length,
                refuse_common=settings.password_refuse_common,
                stale_before=stale_before,
            )
            if (
                policy == "invite"
                and s.scalar(select(Invite.email).where(Invite.email == email, Invite.used_at.is_(None))) is None
            ):
                raise ValidationFailed(
                    {"email": ["Registration on this server is by invitation only; this address has not been invited."]}
                )
            self._check_address_quota(s, address)
        password_hash = hash_password(password)  # before the transaction, never inside it
        link_token = secrets.token_urlsafe(32) if policy == "verify" else None
        try:
            with self.db.session() as s:
                self._check_address_quota(s, address)  # again, under the write lock: concurrent forms count
                # An unverified account whose link expired gives its address up.
                s.execute(
                    delete(User).where(
                        User.email == email, User.email_verified.is_(False), User.created_at < stale_before
                    )
                )
                user = new_user(
                    name,
                    email,
                    password_hash,
                    email_verified=link_token is None,
                    verify_token_hash=_digest(link_token) if link_token else None,
                    registered_from=address[:64] if address else None,
                )
                s.add(user)
                s.flush()
                if settings.new_user_credits:
                    change_credits(s, user, settings.new_user_credits, "grant")
                if policy == "invite":
                    s.execute(update(Invite).where(Invite.email == email).values(used_at=utcnow()))
                user_id = user.id
        except IntegrityError:  # the same address registered by another request in between
            raise ValidationFailed({"email": [TAKEN]}) from None
        if link_token is None:
            return f"Account created for {email}; you can log in now"
        link = f"{settings.effective_public_url}/api/app/verify_email?token={link_token}"
        try:
            mail.send_mail(
                settings,
                email,
                "Verify your e-mail address",
                f"Someone, probably you, registered an account with this address.\n\nOpen this link to verify it "
                f"(it works for {settings.verification_hours:g} hours):\n\n{link}\n\n"
                "If it was not you, ignore this mail.\n",
            )
        except mail.MailNotSent:
            with self.db.session() as s:  # no mail, no account: the address can register again at once
                s.execute(delete(User).where(User.id == user_id))
            raise
        return f"Account verification email sent to {email}"  # MVSep's words, now true

    def _check_address_quota(self, s: Session, address: str | None) -> None:
        limit = self.settings.registrations_per_address_per_day
        if not limit or not address:
            return
        since = utcnow() - timedelta(days=1)
        made = s.scalar(
            select(func.count()).select_from(User).where(User.registered_from == address[:64], User.created_at >= since)
        )
        if (made or 0) >= limit:
            raise ServiceError(
                f"Too many accounts registered from your address today (the limit is {limit}); try again tomorrow",
                status=429,
            )

    def verify_email(self, token: str | None) -> None:
        if not token or len(token) > 128:
            raise NotFound("This verification link is not valid")
        stale_before = utcnow() - timedelta(hours=self.settings.verification_hours)
        with self.db.session() as s:
            user = s.scalar(select(User).where(User.verify_token_hash == _digest(token)))
            if user is None:
                raise NotFound("This verification link is not valid (or was used already)")
            if user.created_at < stale_before:
                raise ServiceError("This verification link has expired; please register again", status=410)
            user.email_verified, user.verify_token_hash, user.updated_at = True, None, utcnow()

    def invite(self, email: str) -> str:
        """Let `email` register (policy invite); returns the normalised address."""
        email = normalise_email(email)
        if _has_refused(email, _EMAIL_REFUSED) or len(email) > 255 or not _EMAIL.match(email):
            raise ValidationFailed({"email": ["The email must be a valid email address."]})
        with self.db.session() as s:
            row = s.get(Invite, email)
            if row is None:
                s.add(Invite(email=email, invited_at=utcnow()))
            else:
                row.invited_at, row.used_at = utcnow(), None
        return email

    # ---------------------------------------------------------------- admin and profile

    def create(self, *, email: str, password: str, name: str = "", credits: int = 0, premium: bool = False) -> User:
        """An account made by an admin (`openmvsep user create`); the password is hashed before the transaction."""
        password_hash = hash_password(password) if password_problem(password) is None else None
        with self.db.session() as s:
            return create_user(
                s,
                email=email,
                password=password,
                name=name,
                credits=credits,
                premium=premium,
                password_hash=password_hash,
            )

    def all(self) -> list[User]:
        with self.db.reader() as s:
            return list(s.scalars(select(User).order_by(User.id)))

    def require(self, token: str | None, *, status: int = 401) -> User:
        with self.db.reader() as s:
            return require_user(s, token, status=status)

    def set_flag(self, token: str | None, flag: str, value: bool) -> None:
        with self.db.session() as s:
            set_flag(s, require_user(s, token, status=400), flag, value)

    def regenerate_token(self, token: str | None) -> User:
        """A new API token for the holder of `token`; the old one stops working at once (on the API, and for web
        sessions, which fingerprint the token)."""
        with self.db.session() as s:
            user = require_user(s, token, status=400)
            user.api_token = new_token()
            user.updated_at = utcnow()
            s.flush()
            s.expunge(user)
            return user

    def credit_ledger(self, token: str | None, limit: int) -> list[dict]:
        """The holder's latest credit changes (grants, charges, refunds), newest first, with the job's hash."""
        with self.db.reader() as s:
            user = require_user(s, token, status=400)
            rows = s.execute(
                select(CreditEntry, Job.hash)
                .outerjoin(Job, Job.id == CreditEntry.job_id)
                .where(CreditEntry.user_id == user.id)
                .order_by(CreditEntry.id.desc())
                .limit(limit)
            ).all()
            return [
                {"date": fmt_datetime(e.created_at), "delta": e.delta, "reason": e.reason, "hash": job_hash}
                for e, job_hash in rows
            ]

    def set_credit_alert(self, token: str | None, threshold: int) -> None:
        with self.db.session() as s:
            require_user(s, token, status=400).credit_alert_threshold = threshold

    # ---------------------------------------------------------------- what admins do (CLI and /admin pages)

    def find(self, user_id: int) -> User:
        with self.db.reader() as s:
            user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"There is no account {user_id}")
        return user

    def search(self, query: str = "", page: int = 1, per_page: int = 50) -> UserPage:
        """Accounts whose e-mail or name contains `query` (any case), newest first."""
        q = select(User)
        needle = normalise_email(query)[:255]
        if needle:
            pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            q = q.where(User.email.like(pattern, escape="\\") | func.lower(User.name).like(pattern, escape="\\"))
        with self.db.reader() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            pages = max(1, -(-total // per_page))
            page = min(max(1, page), pages)
            users = list(s.scalars(q.order_by(User.id.desc()).offset((page - 1) * per_page).limit(per_page)))
        return UserPage(users, total, page, pages)

    def grant(self, user_id: int, delta: int) -> User:
        """Add (or, negative, take back) credits: one `grant` row in the ledger, in the same transaction."""
        limit = self.settings.admin_max_credit_grant
        if delta == 0 or abs(delta) > limit:
            raise ValidationFailed(
                {"credits": [f"The credits must be a whole number from -{limit} to {limit}, not 0."]}
            )
        with self.db.session() as s:
            user = self._locked(s, user_id)
            if user.credits + delta < 0:
                raise ValidationFailed(
                    {"credits": [f"The account has {user.credits} credits; it cannot lose {-delta}."]}
                )
            change_credits(s, user, delta, "grant")
            s.flush()
            return user

    def set_premium(self, user_id: int, value: bool) -> User:
        with self.db.session() as s:
            user = self._locked(s, user_id)
            set_flag(s, user, "premium_enabled", value)
            return user

    def reset_token(self, user_id: int) -> User:
        """A new API token: the old one stops working, and so does every web session of the account."""
        with self.db.session() as s:
            user = self._locked(s, user_id)
            user.api_token, user.updated_at = new_token(), utcnow()
            return user

    def set_disabled(self, user_id: int, value: bool, *, by: int | None = None) -> User:
        """Disable or enable an account; an admin cannot disable their own (nobody would be left to undo it)."""
        if value and by == user_id:
            raise ServiceError("You cannot disable your own account", status=409)
        with self.db.session() as s:
            user = self._locked(s, user_id)
            user.disabled, user.updated_at = value, utcnow()
            return user

    def set_admin(self, email: str, value: bool) -> User:
        """Grant or revoke the admin flag (`openmvsep user admin`)."""
        with self.db.session() as s:
            user = s.scalar(select(User).where(User.email == normalise_email(email)))
            if user is None:
                raise NotFound(f"There is no account with the e-mail {email}")
            user.is_admin, user.updated_at = value, utcnow()
            return user

    @staticmethod
    def _locked(s: Session, user_id: int) -> User:
        user = s.scalar(select(User).where(User.id == user_id).with_for_update())
        if user is None:
            raise NotFound(f"There is no account {user_id}")
        return user
