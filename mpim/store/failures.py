"""How a store failure is told apart: unreachable server, conflict, or a job's own fault."""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from mpim.errors import ErrorCode, MpimError

# MySQL/MariaDB client errors meaning the server was not reached or the
# connection broke: can't connect (2002 socket, 2003 TCP, 2005 host), server
# gone away (2006), lost connection (2013), bad packet after a reset (2055).
_MYSQL_CONNECTION_ERRORS: Final = frozenset({2002, 2003, 2005, 2006, 2013, 2055})


class StoreUnavailable(MpimError):
    """The store server cannot be reached; the client may retry later.

    The client is told ``-ERR service unavailable``; ``str()`` is the
    driver's reason on one line (no statement, no parameters), for logs and
    readiness reports.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(ErrorCode.SERVICE_UNAVAILABLE)
        self.cause = cause

    def __str__(self) -> str:
        reason = str(self.cause).splitlines()
        return f"store unreachable: {reason[0] if reason else type(self.cause).__name__}"

    def __repr__(self) -> str:
        return f"StoreUnavailable({self.cause!r})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (StoreUnavailable, (self.cause,))


def is_unreachable(exc: BaseException) -> bool:
    """A failure to reach the server (not a conflict, not one job's fault)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    args = getattr(exc.orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_CONNECTION_ERRORS
    # psycopg: a refused or broken connection is the one error without SQLSTATE.
    return getattr(exc.orig, "sqlstate", "") is None


def is_conflict(exc: BaseException) -> bool:
    """A failure that re-running the transaction can resolve."""
    return isinstance(exc, (IntegrityError, OperationalError))
