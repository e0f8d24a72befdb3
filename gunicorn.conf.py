"""Gunicorn configuration used by the Procfile; the settings live in the package."""

from connector.gunicorn_config import *  # noqa: F403
