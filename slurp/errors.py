"""Errors of the application layer (settings, CLI).

SlurpError
 └── SettingsError       an SLURP_* environment variable is unknown or invalid
"""

from __future__ import annotations

__all__ = ["SettingsError", "SlurpError"]


class SlurpError(Exception):
    """Base class of the application layer's errors."""


class SettingsError(SlurpError):
    """Configuration from the environment is unusable; the message names each variable."""
