"""A sliding-window call budget shared by every HTTP call the agent makes.

Octopus allows about 100 calls per hour per user, shared with the Octopus app; going over
locks the app out too. Every request (auth, discovery, telemetry, retries) takes a slot,
so no retry storm can exceed the budget. The call times are persisted so that a restart
(or a crash loop) does not start with a fresh budget.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class BudgetExhausted(Exception):
    def __init__(self, wait: float, limit: int, period: float) -> None:
        super().__init__(
            f"call budget used up ({limit} calls per {period:g}s); next call in {wait:.0f}s"
        )
        self.wait = wait


class CallBudget:
    """At most ``limit`` calls in any window of ``period`` seconds (wall clock).

    A slot is freed ``margin`` seconds after the period: a call is counted by the server
    when it arrives, a little after it was taken here, and network jitter must not put
    ``limit + 1`` arrivals into one of the server's windows.
    """

    def __init__(
        self,
        limit: int,
        period: float,
        history: list[float] | None = None,
        persist: Callable[[list[float]], None] | None = None,
        clock: Callable[[], float] = time.time,
        margin: float = 1.0,
    ) -> None:
        self.limit = limit
        self.period = period
        self._span = period + margin
        self._clock = clock
        self._persist = persist
        self._lock = threading.Lock()
        now = clock()
        # A history from the future means the clock was set back: keep it, capped at now.
        self._calls: deque[float] = deque(
            min(t, now) for t in sorted(history or []) if t > now - self._span
        )
        self.used = 0

    def _expire(self, now: float) -> None:
        while self._calls and self._calls[0] <= now - self._span:
            self._calls.popleft()

    def wait_time(self, slots: int = 1) -> float:
        """Seconds until ``slots`` calls may be made (0 if they are free now)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            must_expire = len(self._calls) + min(slots, self.limit) - self.limit
            if must_expire <= 0:
                return 0.0
            return max(0.0, self._calls[must_expire - 1] + self._span - now)

    def available(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return self.limit - len(self._calls)

    def take(self) -> None:
        """Take a slot or raise BudgetExhausted with how long to wait."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if len(self._calls) >= self.limit:
                raise BudgetExhausted(self._calls[0] + self._span - now, self.limit, self.period)
            self._calls.append(now)
            self.used += 1
            snapshot = list(self._calls)
        if self._persist is not None:
            self._persist(snapshot)

    @property
    def steady_interval(self) -> float:
        """Poll spacing that leaves a tenth of the budget for token renewal and retries."""
        reserve = max(1, self.limit // 10)
        return self.period / max(1, self.limit - reserve)
