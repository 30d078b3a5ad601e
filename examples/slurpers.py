"""Example slurpers: ``slurp(ctx, data_map)`` returns (or yields) the records to store."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["drop_admins", "join_users_posts"]


def drop_admins(ctx: Any, data_map: Mapping[str, list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Store every user except admins (``role == 'admin'``)."""
    for user in data_map["users"]:
        if user.get("role") != "admin":
            yield user


def join_users_posts(
    ctx: Any, data_map: Mapping[str, list[dict[str, Any]]]
) -> Iterator[dict[str, Any]]:
    """One record per user with the number of posts they wrote."""
    counts: dict[Any, int] = {}
    for post in data_map["posts"]:
        counts[post["userId"]] = counts.get(post["userId"], 0) + 1
    for user in data_map["users"]:
        yield {**user, "posts": counts.get(user["id"], 0)}
