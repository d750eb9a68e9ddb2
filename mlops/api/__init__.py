"""Presentation: the control-plane REST API."""

from __future__ import annotations

from mlops.api.app import RouteBody, create_api

__all__ = ["RouteBody", "create_api"]
