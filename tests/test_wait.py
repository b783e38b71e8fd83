"""maild.pipeline.worker.wait_any: the daemon's loops wait on it many times a second, for months."""

from __future__ import annotations

import asyncio
import time

from maild.pipeline.worker import wait_any


def test_wait_any_returns_early_and_leaves_no_waiters():
    async def main() -> tuple[float, int]:
        stop, wake = asyncio.Event(), asyncio.Event()
        for _ in range(200):
            await wait_any(0.001, stop, wake)
        asyncio.get_running_loop().call_later(0.05, wake.set)
        started = time.monotonic()
        await wait_any(30, stop, wake)
        waited = time.monotonic() - started
        await asyncio.sleep(0)
        return waited, len(stop._waiters) + len(wake._waiters)  # type: ignore[attr-defined]

    waited, left = asyncio.run(main())
    assert waited < 5 and left == 0
