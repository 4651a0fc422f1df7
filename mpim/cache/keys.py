"""Cache key names, following the original MPIM's naming."""

from __future__ import annotations


def user_by_uid(uid: int) -> str:
    return f"user:uid:{uid}"


def user_token(token_hash: str) -> str:
    """Keyed by the token's sha256, never the token: a cache dump grants nothing."""
    return f"user:token:{token_hash}"


def user_friends(uid: int) -> str:
    return f"user:friends:{uid}"


def user_groups(uid: int) -> str:
    return f"user:groups:{uid}"


def group_info(group_id: int) -> str:
    return f"group:info:{group_id}"


def group_members(group_id: int) -> str:
    return f"group:members:{group_id}"


def presence_route(uid: int) -> str:
    return f"presence:route:{uid}"
