"""Decide when a failed registry request or transfer is tried again, and how long to wait.

One policy for every request whose body can be sent again (no body, or bytes in memory):

- retried: 408, 429, 500, 502, 503, 504, and transport failures (connection refused or reset,
  a dropped connection, a read or write timeout); never another 4xx, never a certificate error;
- at most ``MAX_ATTEMPTS`` attempts, waiting an exponentially growing delay with jitter between
  them (``BASE_DELAY`` doubling, at most ``MAX_DELAY``), or what ``Retry-After`` asks (seconds or
  an HTTP date, at most ``MAX_RETRY_AFTER``), and never more than ``MAX_TOTAL_WAIT`` in all.

A streamed upload is not replayed here (its bytes are gone): the copy engine retries the whole
blob from the source, in a new upload session, under the same limits.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping

from orascp.errors import NetworkError, RegistryError, TLSError

__all__ = [
    "BASE_DELAY",
    "MAX_ATTEMPTS",
    "MAX_DELAY",
    "MAX_RETRY_AFTER",
    "MAX_TOTAL_WAIT",
    "MAX_TRANSFER_ATTEMPTS",
    "RETRY_STATUSES",
    "backoff",
    "is_retryable",
    "retry_after",
]

# The statuses a registry (or the proxy in front of it) uses for "not now, try again".
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Five attempts ride out a registry restart or a short 429 storm; more would hide an outage.
MAX_ATTEMPTS = 5
# 0.2, 0.4, 0.8, 1.6 s (each with jitter): about 3 s in all before the last attempt.
BASE_DELAY = 0.2
MAX_DELAY = 5.0
# Honour a registry's Retry-After, but a CI job should not sit idle for longer than this at once.
MAX_RETRY_AFTER = 30.0
# Sum of all waits for one request (or one blob): beyond it, report the failure.
MAX_TOTAL_WAIT = 60.0
# Whole transfers (a blob read again from the source into a new upload session): each attempt
# already rides out short blips through the request retries above.
MAX_TRANSFER_ATTEMPTS = 3


def backoff(attempt: int) -> float:
    """Return the wait before retry number ``attempt + 1``: exponential, half of it jittered."""
    delay = min(MAX_DELAY, BASE_DELAY * 2**attempt)
    # Jitter keeps concurrent transfers that failed together from retrying together.
    return float(delay / 2 + random.uniform(0, delay / 2))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Return the wait a ``Retry-After`` header asks for (capped), or None without one."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER))


def is_retryable(exc: BaseException) -> bool:
    """Tell whether an error is worth another attempt (transient network or server trouble)."""
    if isinstance(exc, TLSError):
        return False
    if isinstance(exc, NetworkError):
        return True
    return isinstance(exc, RegistryError) and exc.status_code in RETRY_STATUSES
