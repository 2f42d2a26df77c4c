"""Settings of facerec-verify (two photos, one model: the same person or not), as a dataclass whose fields are the
command's flags (nas_core.config_args). Dependency-free (ARCHITECTURE §7): ``--help`` imports nothing heavy.
Values are checked where the job reads them (facerec.deploy.verify_job), not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIN_FACE = 20  # pixels: the shortest side of a face box the detector keeps
MIN_SCORE = 0.9  # the detector's confidence a kept face needs


@dataclass(frozen=True, kw_only=True)
class VerifyOptions:
    """facerec-verify: photo A and photo B → "same person: yes/no" at the model's calibrated threshold."""

    a: str = field(metadata={"cli": False})  # the positional A of facerec.cli.verify
    b: str = field(metadata={"cli": False})  # the positional B
    model: str = field(metadata={"help": "an .onnx file or a facenas .pt checkpoint", "required": True})
    threshold: float | None = field(default=None, metadata={
        "metavar": "T",
        "help": "same person iff cosine >= T, a cosine in [-1, 1] (default: the threshold calibrated with the model, "
                "which facerec-train records in model.pt and facerec-export copies into the .onnx)"})
    detect: bool = field(default=True, metadata={
        "help": "find the largest face of each photo and align it (default on; --no-detect: A and B are already "
                "aligned 112x112 faces)"})
    min_face: int = field(default=MIN_FACE, metadata={"help": "smallest face kept, in pixels (box side)"})
    min_score: float = field(default=MIN_SCORE, metadata={"help": "detector confidence a kept face needs, in (0, 1]"})
    json: bool = field(default=False, metadata={
        "help": "print a JSON object (same, cosine, threshold, threshold_source, a, b) instead of the line"})
    device: str = field(default="auto", metadata={
        "help": "where the detector and the model run: auto (cuda when there is one, else cpu), cpu, cuda or "
                "cuda:N", "metavar": "DEVICE"})
