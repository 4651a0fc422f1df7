"""``MSG`` / ``GMSG`` lines: the one wire shape of a delivered message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mpim.proto import common_pb2

DIRECT_PREFIX: Final = "MSG "
GROUP_PREFIX: Final = "GMSG "


@dataclass(frozen=True, slots=True)
class MessageLine:
    """A parsed message line; ``group_id`` is set for ``GMSG``."""

    id: int
    sender: int
    ts_ms: int
    seq: int
    text: str
    group_id: int | None = None

    def format(self) -> str:
        if self.group_id is not None:
            return (
                f"GMSG id={self.id} group={self.group_id} from={self.sender} "
                f"ts={self.ts_ms} seq={self.seq} text={self.text}"
            )
        return (
            f"MSG id={self.id} from={self.sender} ts={self.ts_ms} seq={self.seq} text={self.text}"
        )

    @classmethod
    def parse(cls, line: str) -> MessageLine:
        """Parse a MSG/GMSG line; ValueError if it is not one."""
        is_group = line.startswith(GROUP_PREFIX)
        if not is_group and not line.startswith(DIRECT_PREFIX):
            raise ValueError(f"not a message line: {line[:40]!r}")
        head, sep, text = line.partition(" text=")
        if not sep:
            raise ValueError("message line without text=")
        fields = dict(part.split("=", 1) for part in head.split(" ")[1:] if "=" in part)
        try:
            return cls(
                id=int(fields["id"]),
                sender=int(fields["from"]),
                ts_ms=int(fields["ts"]),
                seq=int(fields["seq"]),
                text=text,
                group_id=int(fields["group"]) if is_group else None,
            )
        except KeyError as exc:
            raise ValueError(f"message line without {exc.args[0]}=") from None


def is_message_line(line: str) -> bool:
    return line.startswith(DIRECT_PREFIX) or line.startswith(GROUP_PREFIX)


def format_message(message: common_pb2.Message, seq: int) -> str:
    """The line a reader with inbox sequence ``seq`` sees for ``message``."""
    group = message.kind == common_pb2.MESSAGE_KIND_GROUP
    target = message.group_id if group else message.to_uid
    head, tail = line_parts(
        message.id, message.kind, message.from_uid, target, message.ts_ms, message.text
    )
    return f"{head}{seq}{tail}"


def line_parts(
    msg_id: int, kind: int, from_uid: int, target: int, ts_ms: int, text: str
) -> tuple[str, str]:
    """(head, tail) of a message whose ``target`` is its recipient or group.

    A fan-out formats the message once, not once per member.
    """
    if kind == common_pb2.MESSAGE_KIND_GROUP:
        return (
            f"GMSG id={msg_id} group={target} from={from_uid} ts={ts_ms} seq=",
            f" text={text}",
        )
    return f"MSG id={msg_id} from={from_uid} ts={ts_ms} seq=", f" text={text}"
