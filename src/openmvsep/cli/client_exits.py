"""The exit codes of `openmvsep client ...`, by what a script can do about them.

    0    everything asked for is done
    1    the server refused (its message is printed): fix the request, the token or the account
    2    bad usage: an unknown option, a missing input, no token, an unreadable config file
    3    a separation (or a Quality Checker entry) ran and failed on the server
    4    the server could not be reached, or kept failing (5xx, 429) after the retries: try again later;
         `separate` resumes where it stopped
    130  interrupted (Ctrl-C); `separate` resumes where it stopped

When the inputs of one `separate` end differently, the highest code wins (4 over 3 over 1).
"""

from __future__ import annotations

from openmvsep.client import JobFailed, MVSepError, Unavailable

OK = 0
REFUSED = 1
USAGE = 2
FAILED = 3
UNAVAILABLE = 4
INTERRUPTED = 130


def code_for(exc: MVSepError) -> int:
    if isinstance(exc, Unavailable):
        return UNAVAILABLE
    if isinstance(exc, JobFailed):
        return FAILED
    return REFUSED
