"""Running a coroutine from synchronous code."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Boxed(Generic[T]):
    """A result with a short repr. CPython 3.11's asyncio.run, when it restores the
    SIGINT handler in the main thread (gunicorn's sync workers, the CLI), formats the
    main task's repr, result included: for a 50 MB PDF that was 144 MB of text and
    the time to make it (seen in bench (e))."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<{type(self.value).__name__}>"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` from synchronous code, its result never repr'd; in a helper
    thread when this thread already runs an event loop."""

    async def boxed() -> _Boxed[T]:
        return _Boxed(await coro)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(boxed()).value
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, boxed()).result().value
