"""The classification trainer's settings as data (ARCHITECTURE §3 training settings): no torch here, so
`nas-train --help` builds its flags from these fields (nas_core.config_args) without loading the trainer.

A field's ``help`` documents it; the fields without ``cli: False`` are flags of nas-train.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nas_core.config_args import setting


@dataclass
class TrainConfig:
    """One classification training with the paper's settings (nas_core.train.train_classifier)."""

    epochs: int = setting(600, "training epochs (the paper's final trainings)", positive=True)
    lr: float = setting(0.025, "SGD learning rate, cosine to 0 over the epochs", cli=False)
    momentum: float = setting(0.9, "SGD momentum", cli=False)
    weight_decay: float = setting(3e-4, "SGD weight decay", cli=False)
    batch_size: int = setting(64, "training batch", positive=True)
    grad_clip: float = setting(5.0, "gradient norm clip", cli=False)
    # The reference calls scheduler.step() before each epoch, so its last epoch runs at lr 0 and a 2-epoch
    # micro trial gets one real epoch; we step after each epoch unless asked to replicate (ARCHITECTURE §3).
    reference_schedule: bool = setting(False, "step the cosine schedule before each epoch like the reference code "
                                       "(its last epoch then runs at lr 0)")
    amp: bool = setting(True, "mixed precision (CUDA only)", cli=False)
    channels_last: bool = setting(True, "channels_last memory format (CUDA only)", cli=False)
    eval_batch_size: int = setting(500, "batch of the accuracy evaluation", cli=False)

    def to_dict(self) -> dict:
        return asdict(self)
