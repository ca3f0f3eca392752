"""The HTTP API: an app factory; for now health, readiness and metrics of the running server."""

from safewatch.api.app import ApiServices, ApiSettings, create_app

__all__ = ["ApiServices", "ApiSettings", "create_app"]
