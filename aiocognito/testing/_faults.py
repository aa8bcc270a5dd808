"""Injected faults: by probability, in a time window, or for the next N requests."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Literal

from attrs import define, field, frozen, validators

__all__ = ["Fault", "FaultKind", "Faults", "Latency"]

FaultKind = Literal[
    "throttle",
    "internal_error",
    "internal_error_after",
    "reset_before",
    "reset_after",
    "read_timeout",
    "latency",
]


@frozen(kw_only=True)
class Latency:
    """A latency distribution, in seconds.

    Use the constructors: ``Latency.fixed(0.02)``, ``Latency.uniform(0.01, 0.03)``,
    ``Latency.long_tail(median=0.02, p99=0.2)`` (log-normal).
    """

    kind: Literal["fixed", "uniform", "long_tail"]
    a: float
    b: float = 0.0

    @classmethod
    def fixed(cls, seconds: float) -> Latency:
        """Always ``seconds``."""
        return cls(kind="fixed", a=seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        """Uniform between ``low`` and ``high``."""
        return cls(kind="uniform", a=low, b=high)

    @classmethod
    def long_tail(cls, *, median: float, p99: float) -> Latency:
        """Log-normal with the given median and 99th percentile."""
        return cls(kind="long_tail", a=median, b=p99)

    def sample(self, rng: random.Random) -> float:
        """Draw one latency."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        sigma = math.log(max(self.b, self.a) / self.a) / 2.326 if self.a > 0 else 0.0
        return self.a * math.exp(rng.gauss(0.0, sigma))


def _frozen_or_none(operations: Iterable[str] | None) -> frozenset[str] | None:
    return None if operations is None else frozenset(operations)


@frozen(kw_only=True)
class Fault:
    """One injected fault and when it applies.

    A request matches when its operation is in ``operations`` (or ``operations`` is None), the
    server's clock is inside ``[start, end)`` seconds since it started (when given), ``count``
    matches remain (when given), and a draw falls under ``probability``.

    Kinds:
        throttle: answer TooManyRequestsException, beyond any quota (a throttling burst).
        internal_error: answer 500 InternalErrorException; nothing is applied.
        internal_error_after: apply the request, then answer 500 (an ambiguous failure).
        reset_before: reset the connection before applying the request.
        reset_after: apply the request, then reset the connection (an ambiguous failure).
        read_timeout: apply the request, then answer only after ``delay`` seconds.
        latency: add a delay drawn from ``latency`` before handling.
    """

    kind: FaultKind
    probability: float = field(default=1.0, validator=[validators.ge(0.0), validators.le(1.0)])
    start: float | None = None
    end: float | None = None
    count: int | None = None
    operations: frozenset[str] | None = field(default=None, converter=_frozen_or_none)
    delay: float = 0.0
    latency: Latency | None = None

    @classmethod
    def throttle(cls, **when: object) -> Fault:
        """Throttle matching requests (HTTP 400, or 429 with the server's switch)."""
        return cls(kind="throttle", **when)  # type: ignore[arg-type]

    @classmethod
    def internal_error(cls, **when: object) -> Fault:
        """Answer matching requests with 500 InternalErrorException."""
        return cls(kind="internal_error", **when)  # type: ignore[arg-type]

    @classmethod
    def internal_error_after(cls, **when: object) -> Fault:
        """Apply matching requests, then answer 500 InternalErrorException."""
        return cls(kind="internal_error_after", **when)  # type: ignore[arg-type]

    @classmethod
    def reset_before(cls, **when: object) -> Fault:
        """Reset the connection before the request is applied."""
        return cls(kind="reset_before", **when)  # type: ignore[arg-type]

    @classmethod
    def reset_after(cls, **when: object) -> Fault:
        """Apply the request, then reset the connection before answering."""
        return cls(kind="reset_after", **when)  # type: ignore[arg-type]

    @classmethod
    def read_timeout(cls, delay: float, **when: object) -> Fault:
        """Apply the request, then answer only after ``delay`` seconds."""
        return cls(kind="read_timeout", delay=delay, **when)  # type: ignore[arg-type]

    @classmethod
    def slow(cls, latency: Latency, **when: object) -> Fault:
        """Add latency drawn from ``latency`` to matching requests."""
        return cls(kind="latency", latency=latency, **when)  # type: ignore[arg-type]


@define
class _Rule:
    fault: Fault
    remaining: int | None


class Faults:
    """The fault rules of one server, evaluated in the order they were added."""

    def __init__(self, rules: Iterable[Fault] = (), *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._rules: list[_Rule] = []
        self.injected: dict[str, int] = {}
        for rule in rules:
            self.add(rule)

    def add(self, *faults: Fault) -> None:
        """Add rules; they apply from the next request on."""
        self._rules.extend(_Rule(f, f.count) for f in faults)

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    def __bool__(self) -> bool:
        return bool(self._rules)

    @property
    def rng(self) -> random.Random:
        """The generator behind probabilities and latency draws."""
        return self._rng

    def decide(self, operation: str, elapsed: float) -> tuple[Fault | None, float]:
        """Return the outcome fault for one request (if any) and the extra latency."""
        outcome: Fault | None = None
        extra = 0.0
        for rule in self._rules:
            fault = rule.fault
            if outcome is not None and fault.kind != "latency":
                continue
            if fault.operations is not None and operation not in fault.operations:
                continue
            if fault.start is not None and elapsed < fault.start:
                continue
            if fault.end is not None and elapsed >= fault.end:
                continue
            if rule.remaining is not None and rule.remaining <= 0:
                continue
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
            self.injected[fault.kind] = self.injected.get(fault.kind, 0) + 1
            if fault.kind == "latency":
                assert fault.latency is not None
                extra += fault.latency.sample(self._rng)
            else:
                outcome = fault
        return outcome, extra
