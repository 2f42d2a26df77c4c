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


KNOWN: list[KnownIssue] = [
    KnownIssue(
        "last_pt",
        ("facerec/train_state.py", "facerec/train.py"),
        "facerec/train_state.py load_state (the resume path of facerec/train.py)",
        "the resume state is used as read: torch's Optimizer.load_state_dict accepts an 'optimizer' entry "
        "of the wrong structure or momentum buffers of the wrong shape, 'train_state' values of the wrong "
        "type, and set_rng_state runs outside the try (a missing or out-of-range 'rng' entry); each fails "
        "later with an AttributeError/RuntimeError/TypeError/KeyError traceback. Reproduce: python "
        "bench/fuzz_report.py --kinds last_pt --cases-per-kind 12 --seed 0 (cases 0 and 11)",
    ),
    KnownIssue(
        "last_pt",
        ("_check_resume_flags",),
        "facerec/cli/train.py _check_resume_flags (uncommitted work of another engineer)",
        "a last.pt whose config 'flags' is not an object (e.g. a number) raises AttributeError: "
        "'int' object has no attribute 'items'",
    ),
]


def known_issue(verdict: Verdict) -> KnownIssue | None:
    if verdict.outcome != "failure":
        return None
    return next((issue for issue in KNOWN if issue.matches(verdict)), None)
