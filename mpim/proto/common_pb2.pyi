from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_KIND_DIRECT: _ClassVar[MessageKind]
    MESSAGE_KIND_GROUP: _ClassVar[MessageKind]
MESSAGE_KIND_DIRECT: MessageKind
MESSAGE_KIND_GROUP: MessageKind

class Message(_message.Message):
    __slots__ = ("id", "kind", "from_uid", "to_uid", "group_id", "ts_ms", "seq", "text")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FROM_UID_FIELD_NUMBER: _ClassVar[int]
    TO_UID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: MessageKind
    from_uid: int
    to_uid: int
    group_id: int
    ts_ms: int
    seq: int
    text: str
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., from_uid: _Optional[int] = ..., to_uid: _Optional[int] = ..., group_id: _Optional[int] = ..., ts_ms: _Optional[int] = ..., seq: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
