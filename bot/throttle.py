"""Limits on what reaches other people: wrong invitation codes (five within ten
minutes per account, and a ceiling per organisation across accounts), and
private messages (/write: a few a minute per sender and recipient).

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
    def __init__(self, attempts: int = 5, minutes: int = 10, storage_url: str = "async+memory://",
                 *, org_attempts: int = 30, messages: int = 5, message_minutes: int = 1) -> None:
        self.limit = RateLimitItemPerMinute(attempts, minutes)
        # Many accounts guessing codes for one organisation are stopped together.
        self.org_limit = RateLimitItemPerMinute(org_attempts, minutes)
        self.write_limit = RateLimitItemPerMinute(messages, message_minutes)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_url))

    async def org_blocked_for(self, org_id: int | None) -> int:
        if org_id is None or await self.limiter.test(self.org_limit, "wrong-code-org", str(org_id)):
            return 0
        stats = await self.limiter.get_window_stats(self.org_limit, "wrong-code-org", str(org_id))
        return max(1, math.ceil((stats.reset_time - time.time()) / 60))

    async def write_wait(self, sender_id: int, recipient: str) -> int:
        """Seconds until this sender may write to this recipient again (0: now, and counted)."""
        key = (str(sender_id), recipient)
        if await self.limiter.hit(self.write_limit, "write", *key):
            return 0
        stats = await self.limiter.get_window_stats(self.write_limit, "write", *key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def blocked_for(self, user_id: int) -> int:
        """Minutes until this user may try another code (0: now)."""
        key = str(user_id)
        if await self.limiter.test(self.limit, "wrong-code", key):
            return 0
        stats = await self.limiter.get_window_stats(self.limit, "wrong-code", key)
        return max(1, math.ceil((stats.reset_time - time.time()) / 60))

    async def wrong(self, user_id: int, org_id: int | None = None) -> None:
        await self.limiter.hit(self.limit, "wrong-code", str(user_id))
        if org_id is not None:
            await self.limiter.hit(self.org_limit, "wrong-code-org", str(org_id))
