"""The promotion decision: which candidate (if any) should hold the alias, by a target metric and a policy.

Pure: it sees scores, never MLflow. A candidate qualifies when it meets every threshold; the best
qualifying one wins when there is no champion, or when it beats the champion by at least
``min_delta`` in the metric's direction. Otherwise nothing changes (or, with ``when_none_qualifies:
fail``, the job fails once the decision is recorded).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator

from trainyard.core.component import Component

Direction = Literal["maximize", "minimize"]
_THRESHOLD = re.compile(r"^\s*([\w.-]+)\s*(>=|<=|>|<|==)\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}


class Policy(Component):
    """What a winner must meet, and what happens when no candidate does."""

    thresholds: list[str] = Field(
        default_factory=list,
        description="Conditions every winner meets, each 'METRIC OP NUMBER' (OP: >=, >, <=, <, ==), "
        "e.g. 'r2_test >= 0.8'.",
    )
    min_delta: float = Field(
        0.0, ge=0.0, description="How much better than the current champion the winner must be."
    )
    when_none_qualifies: Literal["keep", "fail"] = Field(
        "keep", description="keep: the champion stays (the decision is recorded); fail: the job fails."
    )

    @field_validator("thresholds")
    @classmethod
    def _parse(cls, thresholds: list[str]) -> list[str]:
        for text in thresholds:
            if not _THRESHOLD.match(text):
                raise ValueError(f"{text!r}: expected 'METRIC OP NUMBER', e.g. 'r2_test >= 0.8'")
        return thresholds

    def unmet(self, metrics: dict[str, float]) -> list[str]:
        """The thresholds ``metrics`` fails (a missing metric fails its threshold)."""
        failed = []
        for text in self.thresholds:
            match = _THRESHOLD.match(text)
            assert match is not None
            name, op, number = match.groups()
            if name not in metrics or not _COMPARE[op](metrics[name], float(number)):
                failed.append(text)
        return failed


@dataclass(frozen=True)
class Scored:
    """A candidate (by its label) with its target score and every metric of its run."""

    key: str  # what identifies it across runs of the job: the run id
    label: str
    score: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """``promote`` the winner, or ``keep`` the alias where it is (``reason`` says why)."""

    action: Literal["promote", "keep"]
    reason: str
    winner: Scored | None  # the candidate chosen (promote), or the best qualifying one (keep)
    champion: Scored | None  # the current holder, when it has the target metric
    unqualified: dict[str, list[str]] = field(default_factory=dict)  # label -> thresholds unmet

    @property
    def nothing_qualified(self) -> bool:
        return self.winner is None


def better(a: float, b: float, direction: Direction) -> float:
    """How much better ``a`` is than ``b`` (negative: worse)."""
    return a - b if direction == "maximize" else b - a


def decide(
    candidates: list[Scored], champion: Scored | None, policy: Policy, direction: Direction, target: str
) -> Decision:
    """The decision for these scores (see the module's rule)."""
    unqualified = {c.label: policy.unmet(c.metrics) for c in candidates}
    qualified = [c for c in candidates if not unqualified[c.label]]
    failed = {label: unmet for label, unmet in unqualified.items() if unmet}
    if not qualified:
        return Decision("keep", "no candidate meets the policy", None, champion, failed)
    best = max(qualified, key=lambda c: c.score if direction == "maximize" else -c.score)
    if champion is None:
        return Decision("promote", f"best by {target}, and no champion yet", best, None, failed)
    if best.key == champion.key:
        return Decision("keep", f"the champion is still the best by {target}", best, champion, failed)
    gain = better(best.score, champion.score, direction)
    if gain < policy.min_delta or gain <= 0:
        return Decision(
            "keep",
            f"{best.label} ({target}={best.score:.4g}) does not beat the champion {champion.label} "
            f"({champion.score:.4g}) by min_delta {policy.min_delta:g}",
            best,
            champion,
            failed,
        )
    return Decision(
        "promote",
        f"{best.label} beats the champion {champion.label} by {gain:.4g} in {target}",
        best,
        champion,
        failed,
    )
