"""The web dashboard (``mlops serve`` mounts it at ``/``): server-rendered pages over the
application layer, Jinja2 templates and one stylesheet shipped in this package."""

from __future__ import annotations

from mlops.ui.web.app import create_dashboard

__all__ = ["create_dashboard"]
