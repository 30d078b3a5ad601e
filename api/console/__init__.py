"""The web console: server-rendered pages (Jinja2) over the services the JSON API uses.

``router`` holds every console route; ``api.app.create_app`` includes it, so
``slurp api`` and ``slurp dev`` serve the console under ``/`` next to ``/api``.

- ``login``: sign in with the API's users, sessions, CSRF (``sessions``);
- ``pages``: jobs, a job, a run, collections, a collection, the vendored files;
- ``actions``: Run now, Pause, Resume (admins);
- ``views``, ``cronwords``, ``chart``: what the pages show; ``render``: templates,
  error pages, security headers.

Templates are in ``templates/``; the stylesheet and the few lines of script (local
times, the filter box, the run page's refresh) in ``static/``: no CDN, no build step.
See docs/console.md.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.console import actions, login, pages

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for _module in (login, pages, actions):
    router.include_router(_module.router)
