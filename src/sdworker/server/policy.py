"""A job's ``policy`` (``executionTimeout``, ``ttl``, in ms) checked before it is queued.

Every bad value is the client's to fix, so each is a 400 naming the field; none may reach the
store or the clock as a value that would break them later (a NaN deadline never passes, an
overflowing one raises in the sweep).
"""

from __future__ import annotations

import math
from typing import Any

from sdworker.core.errors import InvalidInput, Problem

#: the longest a job may be kept or run: hosted RunPod's own limit is 7 days
MAX_POLICY_MS = 7 * 24 * 3600 * 1000
_KEYS = ("executionTimeout", "ttl")


def check_policy(policy: Any) -> dict[str, Any]:
    """The policy as the queue stores it; :class:`InvalidInput` naming every bad field."""
    if policy is None:
        return {}
    if not isinstance(policy, dict):
        raise InvalidInput.one("policy", "must be an object", policy)
    problems = []
    for key in _KEYS:
        value = policy.get(key)
        if value is None:
            continue
        rule = _rule(value)
        if rule is not None:
            problems.append(Problem(f"policy.{key}", rule, value))
    if problems:
        raise InvalidInput(problems)
    return {k: v for k, v in policy.items() if v is not None}


def _rule(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number of milliseconds"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number of milliseconds"
    if not 0 < value <= MAX_POLICY_MS:
        return f"must be more than 0 and at most {MAX_POLICY_MS} ms (7 days)"
    return None
