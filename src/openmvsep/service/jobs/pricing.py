"""Plans and prices: who is served first and what a separation costs."""

from __future__ import annotations

from math import floor

from openmvsep.algorithms.choice import Choice
from openmvsep.service.catalog import Algorithm
from openmvsep.service.errors import ServiceError
from openmvsep.store.models import User

PREMIUM, REGISTERED, UNREGISTERED = 2, 1, 0  # a job's plan: higher is served first
PLAN_NAMES = {PREMIUM: "premium", REGISTERED: "registered", UNREGISTERED: "unregistered"}
PREMIUM_GATE = "Seperation type is unavailable until you purchase premium membership"  # MVSep's spelling


def is_premium(user: User | None) -> bool:
    """Premium means "spend credits": enabled on the account and something left to spend."""
    return bool(user and user.premium_enabled and user.credits > 0)


def credits_for(duration_s: float, price_coefficient: float, multiplier: float = 1.0) -> int:
    """MVSep's price: floor(seconds × coefficient / 60), and 1 when that is 0."""
    return max(1, floor(duration_s * price_coefficient * multiplier / 60))


def check_premium_gate(algo: Algorithm, user: User | None) -> None:
    """Premium-only algorithms (coefficient over 1) refuse everyone else before any work."""
    if algo.premium_only and not is_premium(user):
        raise ServiceError(PREMIUM_GATE)


def check_registered_only(algo: Algorithm, choice: Choice, user: User | None) -> None:
    """Options the catalog offers to registered users only (`registered_only_keys`) refuse a request made without
    an account (the unregistered plan), naming the option."""
    if user is not None:
        return
    refused = algo.registered_only_chosen(choice.by_field())
    if refused:
        field, key = refused[0]
        raise ServiceError(
            f"{field.text}: '{field.options.get(key, key)}' is for registered users only. Register (or log in) to "
            "use it, or choose another option."
        )


def plan_and_price(user: User | None, algo: Algorithm, choice: Choice, duration: float) -> tuple[int, int]:
    """(plan, credits to charge) for running `choice` on `duration` seconds."""
    if user is None:
        return UNREGISTERED, 0
    cost = credits_for(duration, algo.price_coefficient, algo.price_multiplier(choice.by_field()))
    if user.premium_enabled and user.credits >= cost:
        return PREMIUM, cost
    if algo.premium_only:
        raise ServiceError(f"This separation costs {cost} credits and your balance is {user.credits}")
    return REGISTERED, 0


def plan_of(user: User | None) -> int:
    """The plan a request of this user queues under before it is priced (URL inputs)."""
    return PREMIUM if is_premium(user) else REGISTERED if user else UNREGISTERED
