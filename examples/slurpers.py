"""Example slurpers: ``slurp(ctx, data_map)`` returns (or yields) the records to store."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["drop_admins", "join_users_posts", "slow_numbers"]


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


def slow_numbers(ctx: Any, data_map: Mapping[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Demo/test slurper: ``params.count`` records, one every ``params.delay_s`` seconds;
    raises at record ``params.fail_at`` if set (to show failed runs)."""
    count = int(ctx.params.get("count", 10))
    delay_s = float(ctx.params.get("delay_s", 0.0))
    fail_at = ctx.params.get("fail_at")
    for i in range(count):
        if fail_at is not None and i == int(fail_at):
            raise RuntimeError(f"slow_numbers was asked to fail at record {i}")
        if delay_s:
            time.sleep(delay_s)
        yield {"n": i, "run_id": ctx.run_id}
