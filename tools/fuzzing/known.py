"""Failures the sweep finds in code this work may not change, each with where it is and a reproducer.

A known failure is still a failure: bench/fuzz_report.py counts it (and exits 1 unless --allow-known);
the tests let only these through. Remove an entry once its owner fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.fuzzing.runner import Verdict


@dataclass(frozen=True)
class KnownIssue:
    kind: str
    marker: str  # text of the case's mutation that identifies the issue
    where: str
    what: str

    def matches(self, verdict: Verdict) -> bool:
        return verdict.kind == self.kind and self.marker in verdict.mutation


KNOWN: list[KnownIssue] = [
    KnownIssue(
        "last_pt",
        "last.pt: /optimizer",
        "facerec/train_state.py load_state (facerec/train.py's resume path)",
        "torch's Optimizer.load_state_dict accepts a last.pt 'optimizer' entry of the wrong structure (an "
        "int or string, a state entry that is not a dict) or momentum buffers of the wrong shape; the first "
        "training step then raises AttributeError/RuntimeError (a traceback). Reproduce: python "
        "bench/fuzz_report.py --kinds last_pt --cases-per-kind 12 --seed 0 (cases 0 and 11)",
    ),
]


def known_issue(verdict: Verdict) -> KnownIssue | None:
    if verdict.outcome != "failure":
        return None
    return next((issue for issue in KNOWN if issue.matches(verdict)), None)
