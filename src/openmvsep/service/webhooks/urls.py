"""Which receivers a user may name: the address rule of URL inputs, for a create's `webhook_url` and endpoints."""

from __future__ import annotations

from openmvsep.net import RemoteFetchError, is_public_address, resolve_host
from openmvsep.net.links import split_http_url
from openmvsep.service.errors import ServiceError

MAX_URL_CHARS = 4096


def check_webhook_url(url: str | None, *, allow_private: bool, field: str = "webhook_url") -> str | None:
    """The webhook URL a user may keep, or a ServiceError (naming `field`) saying why not.

    Only http and https. A host that resolves to a private, loopback or reserved address is refused (unless the
    operator allows private addresses), as for URL inputs. A host that does not resolve now is accepted: DNS may
    be down for a moment or the receiver not yet published, and every delivery attempt checks the address
    again (the pinned HTTP of `openmvsep.net`), so nothing private is ever reached either way.
    """
    if url is None:
        return None
    if len(url) > MAX_URL_CHARS:
        raise ServiceError(f"The {field} is too long")
    try:
        parts = split_http_url(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except RemoteFetchError as e:
        raise ServiceError(f"Invalid {field}: {e}") from None
    if allow_private:
        return url
    try:
        addresses = resolve_host(parts.hostname or "", port)
    except RemoteFetchError:
        return url  # judged at delivery (see above)
    if not all(is_public_address(address) for address in addresses):
        raise ServiceError(f"Invalid {field}: its host is a private or reserved address")
    return url
