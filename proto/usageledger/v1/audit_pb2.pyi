import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Checkpoint(_message.Message):
    __slots__ = ("log_id", "origin", "size", "root_hash", "signed_note", "sign_time")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNED_NOTE_FIELD_NUMBER: _ClassVar[int]
    SIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    origin: str
    size: int
    root_hash: bytes
    signed_note: str
    sign_time: _timestamp_pb2.Timestamp
    def __init__(self, log_id: _Optional[str] = ..., origin: _Optional[str] = ..., size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., signed_note: _Optional[str] = ..., sign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Leaf(_message.Message):
    __slots__ = ("index", "entry_bytes", "previous_hash", "entry_hash")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRY_BYTES_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_HASH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    index: int
    entry_bytes: bytes
    previous_hash: bytes
    entry_hash: bytes
    def __init__(self, index: _Optional[int] = ..., entry_bytes: _Optional[bytes] = ..., previous_hash: _Optional[bytes] = ..., entry_hash: _Optional[bytes] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("log_id", "size")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    size: int
    def __init__(self, log_id: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: Checkpoint
    def __init__(self, checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("log_id", "page_size", "page_token")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    page_size: int
    page_token: str
    def __init__(self, log_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints", "next_page_token")
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[Checkpoint]
    next_page_token: str
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[Checkpoint, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SignCheckpointRequest(_message.Message):
    __slots__ = ("log_id",)
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    def __init__(self, log_id: _Optional[str] = ...) -> None: ...

class SignCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "newly_signed")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    NEWLY_SIGNED_FIELD_NUMBER: _ClassVar[int]
    checkpoint: Checkpoint
    newly_signed: bool
    def __init__(self, checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., newly_signed: _Optional[bool] = ...) -> None: ...

class GetInclusionProofRequest(_message.Message):
    __slots__ = ("log_id", "sequence", "tree_size")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    sequence: int
    tree_size: int
    def __init__(self, log_id: _Optional[str] = ..., sequence: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofResponse(_message.Message):
    __slots__ = ("leaf", "tree_size", "proof_hashes", "checkpoint")
    LEAF_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROOF_HASHES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    leaf: Leaf
    tree_size: int
    proof_hashes: _containers.RepeatedScalarFieldContainer[bytes]
    checkpoint: Checkpoint
    def __init__(self, leaf: _Optional[_Union[Leaf, _Mapping]] = ..., tree_size: _Optional[int] = ..., proof_hashes: _Optional[_Iterable[bytes]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("log_id", "old_size", "new_size")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    old_size: int
    new_size: int
    def __init__(self, log_id: _Optional[str] = ..., old_size: _Optional[int] = ..., new_size: _Optional[int] = ...) -> None: ...

class GetConsistencyProofResponse(_message.Message):
    __slots__ = ("proof_hashes",)
    PROOF_HASHES_FIELD_NUMBER: _ClassVar[int]
    proof_hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, proof_hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListLeavesRequest(_message.Message):
    __slots__ = ("log_id", "page_size", "page_token", "start_index")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    START_INDEX_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    page_size: int
    page_token: str
    start_index: int
    def __init__(self, log_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., start_index: _Optional[int] = ...) -> None: ...

class ListLeavesResponse(_message.Message):
    __slots__ = ("leaves", "next_page_token")
    LEAVES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    leaves: _containers.RepeatedCompositeFieldContainer[Leaf]
    next_page_token: str
    def __init__(self, leaves: _Optional[_Iterable[_Union[Leaf, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetVerifierKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetVerifierKeyResponse(_message.Message):
    __slots__ = ("verifier_key", "ledger_name")
    VERIFIER_KEY_FIELD_NUMBER: _ClassVar[int]
    LEDGER_NAME_FIELD_NUMBER: _ClassVar[int]
    verifier_key: str
    ledger_name: str
    def __init__(self, verifier_key: _Optional[str] = ..., ledger_name: _Optional[str] = ...) -> None: ...
