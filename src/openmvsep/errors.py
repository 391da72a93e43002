"""The project's errors, by what a caller can do about them:

    OpenmvsepError
     ├── UserError       permanent: the same request or input fails again; `message` is shown to the user
     │    ├── service.errors.ServiceError    a refusal of the domain, with the HTTP status MVSep uses
     │    ├── engine.audio.AudioError        input that cannot be decoded
     │    ├── engine.mastering.MasteringError inputs Matchering refuses
     │    ├── engine.runtime.ModelUnavailable a model this server cannot load
     │    └── net.RemoteFetchError           a URL that cannot be fetched
     └── TransientError  the machine, a server or the network failed: another attempt may pass

Callers catch by meaning: a worker fails a job at once on a `UserError` and retries anything else; the API turns
a `ServiceError` into MVSep's error shape. Every layer may import this module; it imports nothing.
"""

from __future__ import annotations

# What a user is told of an error that is not theirs to fix (a bug, a machine's failure); the log has the rest.
INTERNAL = "an internal error on the server (its log has the details)"


class OpenmvsepError(Exception):
    """Base of the project's own errors."""


class UserError(OpenmvsepError):
    """Permanent; `message` is meant for the person who asked (no paths, no tracebacks)."""

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message


class TransientError(OpenmvsepError):
    """Temporary: retry later, maybe elsewhere."""
