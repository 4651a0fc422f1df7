from mpim.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SendRequest(_message.Message):
    __slots__ = ("from_uid", "to_uid", "text", "client_msg_id")
    FROM_UID_FIELD_NUMBER: _ClassVar[int]
    TO_UID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    from_uid: int
    to_uid: int
    text: str
    client_msg_id: str
    def __init__(self, from_uid: _Optional[int] = ..., to_uid: _Optional[int] = ..., text: _Optional[str] = ..., client_msg_id: _Optional[str] = ...) -> None: ...

class SendGroupRequest(_message.Message):
    __slots__ = ("from_uid", "group_id", "text", "client_msg_id")
    FROM_UID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    from_uid: int
    group_id: int
    text: str
    client_msg_id: str
    def __init__(self, from_uid: _Optional[int] = ..., group_id: _Optional[int] = ..., text: _Optional[str] = ..., client_msg_id: _Optional[str] = ...) -> None: ...

class SendReply(_message.Message):
    __slots__ = ("msg_id", "duplicate")
    MSG_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    msg_id: int
    duplicate: bool
    def __init__(self, msg_id: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class SendBatchRequest(_message.Message):
    __slots__ = ("from_uids", "targets", "to_group", "texts", "client_msg_ids")
    FROM_UIDS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    TO_GROUP_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_IDS_FIELD_NUMBER: _ClassVar[int]
    from_uids: _containers.RepeatedScalarFieldContainer[int]
    targets: _containers.RepeatedScalarFieldContainer[int]
    to_group: _containers.RepeatedScalarFieldContainer[bool]
    texts: _containers.RepeatedScalarFieldContainer[str]
    client_msg_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, from_uids: _Optional[_Iterable[int]] = ..., targets: _Optional[_Iterable[int]] = ..., to_group: _Optional[_Iterable[bool]] = ..., texts: _Optional[_Iterable[str]] = ..., client_msg_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SendBatchReply(_message.Message):
    __slots__ = ("msg_ids", "duplicates", "errors")
    MSG_IDS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    msg_ids: _containers.RepeatedScalarFieldContainer[int]
    duplicates: _containers.RepeatedScalarFieldContainer[bool]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, msg_ids: _Optional[_Iterable[int]] = ..., duplicates: _Optional[_Iterable[bool]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("uid", "limit")
    UID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    uid: int
    limit: int
    def __init__(self, uid: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class MessageBatch(_message.Message):
    __slots__ = ("messages", "more")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    more: bool
    def __init__(self, messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ("uid", "after_seq", "limit")
    UID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    uid: int
    after_seq: int
    limit: int
    def __init__(self, uid: _Optional[int] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class SyncReply(_message.Message):
    __slots__ = ("messages", "last_seq", "more")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    last_seq: int
    more: bool
    def __init__(self, messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., last_seq: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("uid", "peer_uid", "group_id", "limit", "before_id")
    UID_FIELD_NUMBER: _ClassVar[int]
    PEER_UID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    uid: int
    peer_uid: int
    group_id: int
    limit: int
    before_id: int
    def __init__(self, uid: _Optional[int] = ..., peer_uid: _Optional[int] = ..., group_id: _Optional[int] = ..., limit: _Optional[int] = ..., before_id: _Optional[int] = ...) -> None: ...

class MarkDeliveredRequest(_message.Message):
    __slots__ = ("uids", "seqs")
    UIDS_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    uids: _containers.RepeatedScalarFieldContainer[int]
    seqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, uids: _Optional[_Iterable[int]] = ..., seqs: _Optional[_Iterable[int]] = ...) -> None: ...
