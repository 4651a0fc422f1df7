"""The four services as the gateway sees them: interfaces, not implementations."""

from __future__ import annotations

from dataclasses import dataclass

from mpim.proto.interfaces import GroupService, MessageService, PresenceService, UserService


@dataclass(frozen=True, slots=True)
class Services:
    user: UserService
    presence: PresenceService
    message: MessageService
    group: GroupService
