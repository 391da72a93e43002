"""The web page: MVSep's site for a self-hosted server (docs/architecture.md: an entry point beside api/).

Server-rendered Jinja2 pages over the same services as the API; the browser gets small ES modules for what only a
browser can do (drag-and-drop, upload progress, the live status stream). Every script and style is served from
this package (static/), so the page works with no network. Its routes live outside `/api/`, so MVSep's API stays
exactly as it is.

One module per page group: `auth` (login, register, logout), `separate` (the upload form and the algorithm
picker), `jobs` (live status and the result page), `info` (the other pages of the navigation). `site.WebPages`
mounts them all; `render` holds the shared layout, `session` the signed cookie and CSRF, `assets` the files.
"""

from openmvsep.web.site import WebPages

__all__ = ["WebPages"]
