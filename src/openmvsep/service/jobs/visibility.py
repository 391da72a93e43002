"""Who may see a job on the web page: its result page, live status, zip and waveforms.

MVSep's result links are public by hash (its own announcements link to them), and so are this server's by default.
With `private_results` on, a job is shown only to the account that made it and to admins, except what has no one
to keep it for or was meant to be seen: a published demo (`is_demo`) and a job made without an account (the
unregistered plan, whose maker has nothing but the hash). A job whose account was deleted stays private.

The API's `separation/get` is not governed by this: MVSep's clients poll it by hash alone, without a token.
"""

from __future__ import annotations

from openmvsep.service.jobs.pricing import UNREGISTERED
from openmvsep.store.models import Job, RemoteJob, User

PRIVATE_MESSAGE = "This separation is private: only the account that made it can see it."


def may_view(job: Job | RemoteJob, viewer: User | None, private_results: bool) -> bool:
    if not private_results:
        return True
    published = job.is_demo if isinstance(job, Job) else bool((job.params or {}).get("is_demo"))
    if published or (job.user_id is None and job.plan == UNREGISTERED):
        return True
    return viewer is not None and (viewer.is_admin or viewer.id == job.user_id)
