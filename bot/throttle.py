"""Throttling of wrong invitation codes: five within ten minutes, then a pause.

Uses the `limits` library (moving window) rather than a hand-written counter:
its storage is in memory by default and can point at Redis when several
workers must share the count.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


class WrongCodeThrottle:
    def __init__(self, attempts: int = 5, minutes: int = 10, storage_url: str = "async+memory://") -> None:
        self.limit = RateLimitItemPerMinute(attempts, minutes)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_url))

    async def blocked_for(self, user_id: int) -> int:
        """Minutes until this user may try another code (0: now)."""
        key = str(user_id)
        if await self.limiter.test(self.limit, "wrong-code", key):
            return 0
        stats = await self.limiter.get_window_stats(self.limit, "wrong-code", key)
        return max(1, math.ceil((stats.reset_time - time.time()) / 60))

    async def wrong(self, user_id: int) -> None:
        await self.limiter.hit(self.limit, "wrong-code", str(user_id))
