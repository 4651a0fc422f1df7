"""argon2id password hashing on a small thread pool, never on the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordHasher:
    """Hashes and verifies off-loop; argon2 releases the GIL while it works."""

    def __init__(
        self, *, memory_kib: int, time_cost: int, parallelism: int, threads: int = 2
    ) -> None:
        self._argon = Argon2Hasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="mpim-hash")
        # Verified against when the user does not exist, so an unknown name
        # takes as long as a wrong password.
        self._dummy_hash = self._argon.hash("mpim-dummy-password")

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._argon.hash, password
        )

    async def verify(self, password_hash: str | None, password: str) -> bool:
        target = password_hash if password_hash is not None else self._dummy_hash
        ok = await asyncio.get_running_loop().run_in_executor(
            self._pool, self._verify, target, password
        )
        return ok and password_hash is not None

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._argon.check_needs_rehash(password_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
