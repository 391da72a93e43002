"""SSRF-guarded HTTP for links that API users give: URL inputs and webhooks.

A user-given URL must not make this server reach itself or its private network, so every request
resolves the host once, checks every address against a policy, and connects to exactly that address
(policy.py, pinned.py). On top: share links turned into direct downloads (links.py), MEGA's
encrypted files (mega.py), safe names and partial-file cleanup (files.py), a download's deadline
and minimum rate (pace.py), downloads (fetch.py) and webhook POSTs (post.py). Errors form one
family (errors.py), caught by class.

This package knows nothing of the rest of openmvsep: settings arrive as arguments.
"""

from openmvsep.net.errors import AddressRefused, RemoteFetchError
from openmvsep.net.fetch import fetch, fetch_with_policy
from openmvsep.net.files import FALLBACK_FILENAME, FetchedFile, safe_filename
from openmvsep.net.links import REMOTE_TYPES, direct_url
from openmvsep.net.mega import DEFAULT_MEGA_API_URL
from openmvsep.net.pace import Pace
from openmvsep.net.pinned import MAX_REDIRECTS
from openmvsep.net.policy import IPAddress, NetworkPolicy, is_public_address, resolve_host
from openmvsep.net.post import post_body

__all__ = [
    "DEFAULT_MEGA_API_URL",
    "FALLBACK_FILENAME",
    "MAX_REDIRECTS",
    "REMOTE_TYPES",
    "AddressRefused",
    "FetchedFile",
    "IPAddress",
    "NetworkPolicy",
    "Pace",
    "RemoteFetchError",
    "direct_url",
    "fetch",
    "fetch_with_policy",
    "is_public_address",
    "post_body",
    "resolve_host",
    "safe_filename",
]
