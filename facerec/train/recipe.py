"""Face training recipes: AdaFace's for large packs, a small-data one below (``--recipe auto|adaface|small``).

AdaFace's recipe (ARCHITECTURE §4) is tuned for CASIA-WebFace-sized packs (~0.5M images): batch 512 and
step decay at 12/20/24 of 26 epochs. On a few thousand images it takes a handful of steps per epoch and
learns almost nothing in a short run, so a search ranks noise. ``auto`` takes AdaFace's recipe, unchanged,
exactly when the pack has at least ADAFACE_MIN_IMAGES images, and the small-data recipe below that.

The small-data recipe keeps what measurably helped on lfw_train (3-epoch trials, 500 identities) and on lfw_train +
raw_faces (4 epochs, 3,723 people; bench/recipe_study.py): a batch of at most 32 matched to the data (at least
MIN_STEPS_PER_EPOCH steps per epoch), one epoch of linear warm-up, cosine
decay, and CosFace with AdaCos's fixed scale √2·ln(C − 1) (~9 for hundreds of identities) and margin 0.35.
The scale is what matters: held-out accuracy 80 % at s ≈ 9 against 53-59 % at s = 64 for CosFace, ArcFace
and AdaFace alike, whose embeddings collapse (mean-norm > 0.8). Explicit --batch-size / --lr / --head flags
override a recipe's values.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from facerec.errors import FaceRecError
from facerec.train.config import TrainConfig
from nas_core.config_args import add_dataclass_args

ADAFACE_MIN_IMAGES = 100_000
MIN_STEPS_PER_EPOCH = 50
RECIPES = ("auto", "adaface", "small")


@dataclass(frozen=True)
class Recipe:
    name: str  # "adaface" or "small"
    batch_size: int
    lr: float
    head: str
    head_options: dict = field(default_factory=dict)  # margin/scale overrides of the head's defaults
    warmup_epochs: float = 0.0
    schedule: str = "step"  # "step": AdaFace's milestones scaled to the run; "cosine": cosine to 0
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return d

    def train_config(self, **fields: Any) -> TrainConfig:
        """A TrainConfig with this recipe's settings (and ``fields``: epochs, seed, ...)."""
        return TrainConfig(batch_size=self.batch_size, lr=self.lr, head=self.head, head_options=dict(self.head_options),
                           warmup_epochs=self.warmup_epochs, schedule=self.schedule, recipe=self.to_dict(), **fields)


def adaface_recipe() -> Recipe:
    """AdaFace's recipe: TrainConfig's defaults, which are AdaFace's (batch 512, lr 0.1, step decay, AdaFace head)."""
    return Recipe("adaface", batch_size=TrainConfig.batch_size, lr=TrainConfig.lr, head=TrainConfig.head,
                  warmup_epochs=TrainConfig.warmup_epochs, schedule=TrainConfig.schedule)


SMALL_MAX_BATCH = 32


def small_batch_size(num_images: int) -> int:
    """The largest power of two in [16, SMALL_MAX_BATCH] that still gives MIN_STEPS_PER_EPOCH steps per epoch.

    32, not 128: on 3,723 people (27k training faces, 4 epochs, bench/recipe_study.py) batch 32 scored 87.2 %
    on held-out people against 85.6 % at batch 128 (the same lr, so 4x the steps), and on a CPU it took half the
    time (small batches stay in cache)."""
    batch = SMALL_MAX_BATCH
    while batch > 16 and num_images // batch < MIN_STEPS_PER_EPOCH:
        batch //= 2
    return batch


def fixed_scale(num_classes: int) -> float:
    """AdaCos's fixed scale √2·ln(C − 1) for C classes (Zhang et al., "AdaCos: Adaptively Scaling Cosine
    Logits for Effectively Learning Deep Face Representations", CVPR 2019): large enough that a confident
    target logit wins over C − 1 others, small enough that the loss still has a gradient for the ones it gets
    right. It gives 8.8 for 500 identities, where s = 64 left the loss saturated and the embeddings collapsed."""
    return round(math.sqrt(2) * math.log(max(3, num_classes) - 1), 2)


def small_recipe(train_images: int, num_classes: int) -> Recipe:
    batch = small_batch_size(train_images)
    scale = fixed_scale(num_classes)
    return Recipe(
        "small", batch_size=batch, lr=0.1, head="cosface", head_options={"s": scale, "m": 0.35},
        warmup_epochs=1.0, schedule="cosine",
        reasons=(f"batch {batch}: {train_images // batch} steps per epoch (AdaFace's 512 would give "
                 f"{train_images // 512})", f"CosFace scale {scale:g} = √2·ln({num_classes} classes − 1)"),
    )


def choose_recipe(choice: str, pack_images: int, train_images: int | None = None,
                  num_classes: int | None = None) -> Recipe:
    """The recipe ``choice`` ("auto", "adaface", "small") names for a pack of ``pack_images`` images of which
    the run trains on ``train_images`` of ``num_classes`` identities (default: all images; classes ≈ images/5),
    with the reasons for it. ``auto`` decides on the pack; the small recipe sizes its batch and scale to what
    the run trains on."""
    if choice not in RECIPES:
        raise FaceRecError(f"--recipe {choice}: expected one of {', '.join(RECIPES)}")
    train_images = pack_images if train_images is None else train_images
    num_classes = max(2, train_images // 5) if num_classes is None else num_classes
    if choice == "auto":
        large = pack_images >= ADAFACE_MIN_IMAGES
        why = (f"auto: the pack holds {pack_images:,} images, {'≥' if large else '<'} {ADAFACE_MIN_IMAGES:,}: "
               + ("AdaFace's recipe, unchanged" if large else "the small-data recipe"))
        chosen = adaface_recipe() if large else small_recipe(train_images, num_classes)
        return replace(chosen, reasons=(why, *chosen.reasons))
    recipe = adaface_recipe() if choice == "adaface" else small_recipe(train_images, num_classes)
    return replace(recipe, reasons=(f"--recipe {choice}", *recipe.reasons))


def with_overrides(recipe: Recipe, *, batch_size: int | None = None, lr: float | None = None,
                   head: str | None = None) -> Recipe:
    """``recipe`` with the values given explicitly on the command line (None: the recipe's). A head named
    explicitly comes with its own scale and margin (ARCHITECTURE §4), not the recipe's."""
    given = {k: v for k, v in (("batch_size", batch_size), ("lr", lr), ("head", head)) if v is not None}
    if not given:
        return recipe
    changes = dict(given)
    if "head" in given:
        changes["head_options"] = {}
    reasons = (*recipe.reasons, "given on the command line: " + ", ".join(f"{k} {v}" for k, v in given.items()))
    return replace(recipe, **changes, reasons=reasons)


def describe(recipe: Recipe) -> str:
    """One log line: the recipe, its settings and why it was chosen."""
    options = "".join(f" {k}={v:g}" for k, v in recipe.head_options.items())
    return (f"recipe {recipe.name}: batch {recipe.batch_size}, lr {recipe.lr:g} ({recipe.schedule}"
            f"{f', {recipe.warmup_epochs:g} warm-up epoch(s)' if recipe.warmup_epochs else ''}), head {recipe.head}"
            f"{options} -- " + "; ".join(recipe.reasons))


def add_recipe_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", choices=RECIPES, default="auto",
                        help=f"training recipe: auto (default: AdaFace's for a pack of ≥ {ADAFACE_MIN_IMAGES:,} "
                             "images, else small), adaface (ARCHITECTURE §4), small (the small-data recipe)")


# The TrainConfig fields a recipe sets that a flag may override (facerec-train, facerec-search, facerec-study).
RECIPE_FLAGS = ("batch_size", "lr", "head")


def add_recipe_args(parser: argparse.ArgumentParser, demo: dict[str, Any] | None = None) -> None:
    """--recipe and the flags that override its values (TrainConfig's fields; not given: the recipe's, or with
    no --data the demo's value in ``demo``)."""
    add_recipe_flag(parser)
    demo = demo or {}
    add_dataclass_args(parser, TrainConfig, include=RECIPE_FLAGS, defaults=dict.fromkeys(RECIPE_FLAGS),
                       help_suffix={name: " (default: the recipe's" + (f"; demo {demo[name]})" if name in demo else ")")
                                    for name in RECIPE_FLAGS})


def resolve_recipe(choice: str, data_info: dict, *, batch_size: int | None = None, lr: float | None = None,
                   head: str | None = None, log: logging.Logger | None = None) -> Recipe:
    """The recipe ``choice`` names for a run's data (``RunData.info``: pack_images, train_images,
    train_identities), with the values given explicitly; logged with its reasons."""
    recipe = with_overrides(choose_recipe(choice, data_info["pack_images"], data_info["train_images"],
                                          data_info["train_identities"]),
                            batch_size=batch_size, lr=lr, head=head)
    if log is not None:
        log.info(describe(recipe))
    return recipe


def recipe_from_args(args: argparse.Namespace, data_info: dict, log: logging.Logger | None = None) -> Recipe:
    """``resolve_recipe`` for the flags of ``add_recipe_args`` (--recipe, --batch-size, --lr, --head)."""
    return resolve_recipe(args.recipe, data_info, batch_size=args.batch_size, lr=args.lr, head=args.head, log=log)


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of 0-based global step ``step``, as a multiple of ``config.lr``: the one schedule of the
    face trainer (a LambdaLR over this, stepped after every optimizer step). Warm-up rises linearly to ``lr``
    over ``warmup_epochs``, at most a quarter of the run (a 1-epoch search trial still spends most of it at full
    lr); "cosine" then falls towards 0 at the last step of ``schedule_length`` epochs; "step" divides by 10 at
    each milestone epoch passed (AdaFace's step decay, ARCHITECTURE §4)."""
    total = max(1, config.schedule_length * steps_per_epoch)
    warm = min(total // 4, round(config.warmup_epochs * steps_per_epoch))
    factor = (step + 1) / warm if step < warm else 1.0
    if config.schedule == "cosine":
        factor *= 0.5 * (1 + math.cos(math.pi * min(1.0, max(0, step - warm) / max(1, total - warm))))
    else:
        factor *= 0.1 ** sum(step // max(1, steps_per_epoch) >= m for m in config.lr_milestones())
    return factor


def scheduled_lr(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of 0-based global step ``step`` (``lr_factor`` times ``config.lr``)."""
    return config.lr * lr_factor(config, step, steps_per_epoch)
