"""Whole numbers from form and query fields, bounded by what the database can hold.

A value the database cannot bind (2^63 and above) must be a clear 400, not a driver's overflow and a 500; and
only ASCII digits count (`int()` also takes "٣", and `str.isdigit()` says yes to "²", which `int()` refuses).
"""

from __future__ import annotations

from openmvsep.service.errors import ServiceError

SQL_INT_MAX = 2**63 - 1  # a signed 64-bit column: SQLite's INTEGER, PostgreSQL's BIGINT


def is_integer_text(text: str) -> bool:
    digits = text[1:] if text[:1] in ("+", "-") else text
    return digits.isascii() and digits.isdigit()


def parse_int(name: str, value: str | None, default: int) -> int:
    """`value` as an integer (`default` when empty); a ServiceError naming `name` when it is not one or is out
    of the database's range."""
    text = (value or "").strip()
    if not text:
        return default
    if not is_integer_text(text):
        raise ServiceError(f"The {name} field must be an integer.")
    return in_range(name, int(text))


def in_range(name: str, number: int) -> int:
    if not -SQL_INT_MAX <= number <= SQL_INT_MAX:
        raise ServiceError(f"The {name} field is out of range.")
    return number
