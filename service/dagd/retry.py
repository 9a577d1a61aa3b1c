"""RetryPolicy: how many tries, how long to wait between them, which errors to retry.

Pure: the policy decides, the store records the decision as `up_for_retry` with a
due time, and the scheduler wakes when it is due. Randomness (jitter) is injected.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from dagd.errors import FAIL_TASK, DagDefinitionError

# Reasons that are not the task's fault: retried whatever `retry_on` says.
INFRASTRUCTURE_REASONS = frozenset({"daemon restarted", "daemon stopped"})
MAX_INTERRUPTIONS = 3


def _seconds(value: float | timedelta | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DagDefinitionError(
            f"{name} must be a number of seconds or a timedelta, not {value!r}", field=name
        )
    if value < 0:
        raise DagDefinitionError(f"{name} must not be negative, got {value}", field=name)
    return float(value)


def exception_names(exc_type: type[BaseException]) -> list[str]:
    """Qualified names of an exception class and its bases, for matching across processes."""
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in exc_type.__mro__]


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` extra tries after the first; delay grows by 2x with exponential backoff.

    `jitter` is a fraction: each delay is multiplied by a random factor in [1-j, 1+j].
    `retry_on` limits retries to these exception types (and their subclasses); any other
    exception fails the task at once. Empty means every exception is retried.
    `dagd.errors.FailTask` (and its subclasses) is never retried.
    """

    retries: int = 0
    retry_delay: float = 300.0
    retry_exponential_backoff: bool = False
    max_retry_delay: float | None = None
    jitter: float = 0.0
    retry_on: tuple[str, ...] = field(default=())

    @classmethod
    def build(
        cls,
        *,
        retries: int = 0,
        retry_delay: float | timedelta = 300.0,
        retry_exponential_backoff: bool = False,
        max_retry_delay: float | timedelta | None = None,
        jitter: float = 0.0,
        retry_on: Iterable[type[BaseException]] | type[BaseException] | None = None,
    ) -> RetryPolicy:
        """Validate user settings and build a policy; bad values raise DagDefinitionError."""
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise DagDefinitionError(
                f"retries must be a whole number >= 0, got {retries!r}", field="retries"
            )
        delay = _seconds(retry_delay, "retry_delay")
        cap = _seconds(max_retry_delay, "max_retry_delay")
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise DagDefinitionError(
                f"jitter must be a fraction between 0 and 1, got {jitter!r}", field="jitter"
            )
        if retry_on is None:
            names: tuple[str, ...] = ()
        else:
            if isinstance(retry_on, type):
                types: tuple[object, ...] = (retry_on,)
            elif isinstance(retry_on, list | tuple | set | frozenset):
                types = tuple(retry_on)
            else:
                # A string would otherwise be iterated letter by letter.
                raise DagDefinitionError(
                    f"retry_on must be an exception class or a list of them, got {retry_on!r}",
                    field="retry_on",
                )
            checked: list[type[BaseException]] = []
            for t in types:
                if not (isinstance(t, type) and issubclass(t, BaseException)):
                    raise DagDefinitionError(
                        f"retry_on must list exception classes, got {t!r}", field="retry_on"
                    )
                checked.append(t)
            names = tuple(f"{t.__module__}.{t.__qualname__}" for t in checked)
        return cls(
            retries=retries,
            retry_delay=delay if delay is not None else 300.0,
            retry_exponential_backoff=bool(retry_exponential_backoff),
            max_retry_delay=cap,
            jitter=float(jitter),
            retry_on=names,
        )

    @property
    def max_tries(self) -> int:
        return self.retries + 1

    def should_retry(self, try_number: int, error_names: list[str], reason: str = "") -> bool:
        """After try `try_number` (1-based) failed with these exception names, retry?

        An interruption by dagd itself (a stop, a crash) is not the task's failure: it is
        retried even past the task's own tries, up to MAX_INTERRUPTIONS more, so that a
        task which brings the daemon down every time cannot loop forever.
        """
        if reason in INFRASTRUCTURE_REASONS:
            return try_number < self.max_tries + MAX_INTERRUPTIONS
        if try_number >= self.max_tries or FAIL_TASK in error_names:
            return False
        if reason in INFRASTRUCTURE_REASONS or not self.retry_on:
            return True
        return any(name in self.retry_on for name in error_names)

    def delay(self, try_number: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after try `try_number` (1-based) failed."""
        base = self.retry_delay
        if self.retry_exponential_backoff:
            base = base * (2 ** (try_number - 1))
        if self.max_retry_delay is not None:
            base = min(base, self.max_retry_delay)
        if self.jitter:
            base = base * (1 - self.jitter + 2 * self.jitter * rand())
            if self.max_retry_delay is not None:
                base = min(base, self.max_retry_delay)
        return max(base, 0.0)
