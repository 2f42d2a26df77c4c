"""Failures the sweep finds in code this work may not change, each with where it is and how to reproduce it.

A known failure is still a failure: bench/fuzz_report.py counts it (and exits 1 unless --allow-known);
the tests let only these through. Remove an entry once its owner fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.fuzzing.runner import Verdict


@dataclass(frozen=True)
class KnownIssue:
    kind: str
    frames: tuple[str, ...]  # a traceback through one of these is this issue
    where: str
    what: str

    def matches(self, verdict: Verdict) -> bool:
        trace = verdict.detail.get("exception") or ""
        return verdict.kind == self.kind and any(f in trace for f in self.frames)


# The resume-state failures the first sweeps found in facerec/train/state.py load_state (an optimizer entry
# of the wrong structure or shapes, train_state values of the wrong type, set_rng_state outside the try) and
# in facerec-train's _check_resume_flags (flags not an object) were fixed there by their owner.
KNOWN: list[KnownIssue] = []


def known_issue(verdict: Verdict) -> KnownIssue | None:
    if verdict.outcome != "failure":
        return None
    return next((issue for issue in KNOWN if issue.matches(verdict)), None)
