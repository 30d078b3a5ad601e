"""Dramatiq actors that run jobs and consume events (see the workers issue)."""
