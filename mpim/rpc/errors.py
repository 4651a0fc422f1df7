"""How client-visible failures cross a gRPC boundary and come back intact.

A service's MpimError travels as FAILED_PRECONDITION with the wire text as
details; the caller raises the same MpimError again. Any transport failure
(unavailable, deadline, cancelled) becomes ``-ERR service unavailable``.
"""

from __future__ import annotations

from typing import Final

import grpc

from mpim.errors import ErrorCode, MpimError, error_code

BUSINESS_STATUS: Final = grpc.StatusCode.FAILED_PRECONDITION

# Worth trying another instance: the call never ran, or its instance is gone.
RETRYABLE: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def from_rpc_error(error: grpc.aio.AioRpcError) -> MpimError:
    """The MpimError a failed call stands for."""
    if error.code() == BUSINESS_STATUS:
        code = error_code(error.details() or "")
        if code is not None:
            return MpimError(code)
    return MpimError(ErrorCode.SERVICE_UNAVAILABLE)
