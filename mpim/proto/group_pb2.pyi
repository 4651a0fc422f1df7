from mpim.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CreateGroupRequest(_message.Message):
    __slots__ = ("owner_uid", "name", "description")
    OWNER_UID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    owner_uid: int
    name: str
    description: str
    def __init__(self, owner_uid: _Optional[int] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CreateGroupReply(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    def __init__(self, group_id: _Optional[int] = ...) -> None: ...

class MembershipRequest(_message.Message):
    __slots__ = ("uid", "group_id")
    UID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    uid: int
    group_id: int
    def __init__(self, uid: _Optional[int] = ..., group_id: _Optional[int] = ...) -> None: ...

class GroupRef(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    def __init__(self, group_id: _Optional[int] = ...) -> None: ...

class MembersReply(_message.Message):
    __slots__ = ("member_uids",)
    MEMBER_UIDS_FIELD_NUMBER: _ClassVar[int]
    member_uids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, member_uids: _Optional[_Iterable[int]] = ...) -> None: ...

class UserGroupsRequest(_message.Message):
    __slots__ = ("uid",)
    UID_FIELD_NUMBER: _ClassVar[int]
    uid: int
    def __init__(self, uid: _Optional[int] = ...) -> None: ...

class UserGroupsReply(_message.Message):
    __slots__ = ("group_ids",)
    GROUP_IDS_FIELD_NUMBER: _ClassVar[int]
    group_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, group_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class GroupInfo(_message.Message):
    __slots__ = ("group_id", "name", "description", "owner_uid", "created_at_ms")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OWNER_UID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    name: str
    description: str
    owner_uid: int
    created_at_ms: int
    def __init__(self, group_id: _Optional[int] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., owner_uid: _Optional[int] = ..., created_at_ms: _Optional[int] = ...) -> None: ...
