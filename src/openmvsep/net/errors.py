"""The one exception family of openmvsep.net, so that callers decide by class, never by message text.

    RemoteFetchError      a request or download that cannot be done; str(e) is fit to show the API user
     └── AddressRefused   the host resolves to an address the policy refuses (private, loopback, reserved)

AddressRefused is final: asking again reaches the same refused address, so a caller that retries
(webhooks) stops at once. Every other RemoteFetchError may be passing (a timeout, a busy server).
"""

from __future__ import annotations

from openmvsep.errors import UserError


class RemoteFetchError(UserError):
    """A download that cannot be done; str(e) is a short message fit to show the API user."""


class AddressRefused(RemoteFetchError):
    """The target's host resolves to an address the network policy does not allow."""
