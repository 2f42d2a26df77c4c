"""The face trainer's settings as data (ARCHITECTURE §4): no torch here, so `facerec-train --help` builds its
flags from these fields (nas_core.config_args) without loading the trainer.

A field's ``help`` documents it; the fields without ``cli: False`` are flags of facerec-train (and, for the
ones a recipe sets, of facerec-search and facerec-study through facerec.train.recipe.add_recipe_args).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nas_core.config_args import setting
from nas_core.values import SEED_MAX

ADAFACE_EPOCHS = 26
# facerec-train with no --data (the built-in demo set): CPU-sized values for the flags not given. Batch, lr
# and head otherwise come from the recipe (facerec.train.recipe), epochs and workers from TrainConfig.
DEMO_DEFAULTS = {"epochs": 3, "batch_size": 32, "lr": 0.05, "head": "adaface", "workers": 0}


@dataclass
class TrainConfig:
    """One face training. The defaults are AdaFace's recipe (ARCHITECTURE §4)."""

    epochs: int = setting(ADAFACE_EPOCHS, "training epochs; the lr milestones 12/20/24 of 26 scale with them",
                          positive=True)
    batch_size: int = setting(512, "global batch, split over the torchrun ranks", positive=True)
    lr: float = setting(0.1, "SGD learning rate at the end of the warm-up", minimum=0)
    momentum: float = setting(0.9, "SGD momentum", cli=False)
    weight_decay: float = setting(5e-4, "SGD weight decay (none on BN, bias, PReLU)", cli=False)
    milestones: tuple[int, ...] = setting((12, 20, 24), "lr ×0.1 at these epochs of a 26-epoch run (AdaFace), "
                                          "scaled to the schedule's length", cli=False)
    head: str = setting("adaface", "margin head: adaface, arcface or cosface")
    head_options: dict = field(default_factory=dict, metadata={"help": "the head's scale/margin when not its own "
                                                                       "(facerec.train.recipe)", "cli": False})
    warmup_epochs: float = setting(0.0, "linear lr warm-up, in epochs (at most a quarter of the run)", cli=False)
    schedule: str = setting("step", "step: ×0.1 at the milestones; cosine: cosine decay to 0 at the last step",
                            choices=("step", "cosine"), cli=False)
    recipe: dict | None = setting(None, "the facerec.train.recipe.Recipe these settings came from, with its "
                                  "reasons", cli=False)
    seed: int = setting(0, "seed of the initial weights, the batch order and the augmentation", minimum=0,
                       maximum=SEED_MAX)
    workers: int = setting(2, "data loader worker processes per rank", minimum=0)
    amp: bool = setting(True, "mixed precision (CUDA only)", cli=False)
    checkpoint_every: int = setting(500, "steps between mid-epoch writes of OUT/last.pt; 0: only at epoch ends",
                                   minimum=0)
    max_nan_steps: int = setting(5, "stop after this many non-finite losses in a row", positive=True)
    val_batch_size: int = setting(128, "batch of the verification embeddings", cli=False)
    # facerec.deploy.threshold.DEFAULT_FAR (a numpy module: not imported here, --help stays light).
    far: float = setting(1e-3, "false accept rate at which model.pt's verification threshold (same person iff "
                         "cosine >= it; read by facerec-verify) is calibrated on the held-out identities' pairs",
                         positive=True)
    # Longer than ``epochs``, a run is the first epochs of a longer training: how the "truncated" face
    # ranking trains its short trials.
    schedule_epochs: int | None = setting(None, "the lr schedule is laid out over this many epochs (default: "
                                          "epochs)", cli=False)

    @property
    def schedule_length(self) -> int:
        return self.schedule_epochs or self.epochs

    def lr_milestones(self) -> list[int]:
        """AdaFace's milestones scaled to the schedule's length (12/20/24 of 26 stay 12/20/24)."""
        scaled = {max(1, round(m * self.schedule_length / ADAFACE_EPOCHS)) for m in self.milestones}
        return sorted(m for m in scaled if m < self.schedule_length)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "milestones" in known:
            known["milestones"] = tuple(known["milestones"])
        return cls(**known)
