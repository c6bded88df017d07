"""Exponential backoff with jitter (half fixed, half random) so agents do not retry in step."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 1.0, maximum: float = 300.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """Delay before the next attempt; a server's Retry-After is a floor, not a hint."""
        self.failures += 1
        ceiling = min(self.maximum, self.initial * 2 ** (self.failures - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.maximum * 4))
        return delay

    def reset(self) -> None:
        self.failures = 0
