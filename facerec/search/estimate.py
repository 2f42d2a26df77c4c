"""facerec-search --estimate: the cost of a face search before running it (nas_core.estimate, ARCHITECTURE §8).

The data enter only through their counts: images and identities from the pack's header and index, or from
``property`` and ``train.idx`` alone (InsightFace layout, ARCHITECTURE §5: index keys are record 0, the
images, then one record per identity), so a pack's metadata is enough and no pixel is read. The smallest
and the largest candidate each train a few steps on random 112x112 batches on the chosen device (on a CPU
at a batch of at most 16, scaled linearly to the recipe's batch).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from facerec.data.datasets import FacePack
from facerec.data.demo import DEMO_IDENTITIES, DEMO_IMAGES_PER_IDENTITY
from facerec.data.run_data import default_holdout
from facerec.errors import FaceRecError
from facerec.model.heads import create_head
from facerec.model.space import IResNetSpace
from facerec.search.evaluator import search_fitness
from facerec.train.recipe import resolve_recipe
from nas_core.cost import CostTable, run_costs
from nas_core.estimate import budget_figures, forecast, smallest_and_largest, timed_step, worst_case_trials
from nas_core.settings import SearchSettings

IMAGE_BYTES = 112 * 112 * 3  # one decoded uint8 image in the data cache
_CPU_BATCH = 16


def pack_counts(root: str | Path) -> tuple[int, int]:
    """(images, identities) of a face pack, from its header and index, or from property + train.idx alone."""
    root = Path(root)
    if (root / "train.rec").is_file():

        pack = FacePack(root)
        return pack.num_images, pack.num_identities
    prop, idx = root / "property", root / "train.idx"
    try:
        identities = int(prop.read_text().split(",")[0])
        with open(idx, "rb") as handle:
            keys = sum(1 for line in handle if line.strip())
    except (OSError, ValueError) as exc:
        raise FaceRecError(f"{root}: expected train.rec, or property ('classes,112,112') and train.idx ({exc})") from None
    if keys - 1 - identities < 1:
        raise FaceRecError(f"{idx}: expected record 0, the images and {identities} identity records")
    return keys - 1 - identities, identities


def _data_counts(options: dict, seed: int) -> dict:

    if options["data"] is None:
        images, identities = DEMO_IDENTITIES * DEMO_IMAGES_PER_IDENTITY, DEMO_IDENTITIES
    else:
        images, identities = pack_counts(options["data"])
    used = min(options["subset_ids"] or identities, identities)
    holdout = options["holdout_ids"]
    if holdout is None:  # as facerec.data.run_data.prepare_data
        holdout = default_holdout(used, search_fitness(options))
    train_ids = used - holdout
    return {"pack_images": images, "identities": used, "train_identities": train_ids,
            "train_images": round(images * train_ids / identities)}


def _timing_batch(recipe, device: torch.device) -> int:
    """The batch a step is timed at: the recipe's on a GPU, at most 16 on a CPU (then scaled linearly)."""
    return recipe.batch_size if device.type == "cuda" else min(recipe.batch_size, _CPU_BATCH)


def _step_seconds(space, genotype, recipe, classes: int, device: torch.device) -> float:
    """Seconds of one training step (forward, margin head, backward, SGD) at the recipe's batch."""

    batch = _timing_batch(recipe, device)
    backbone = space.build(genotype).to(device).train()
    head = create_head(recipe.head, space.embedding_size, classes, **recipe.head_options).to(device)
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=recipe.lr, momentum=0.9)
    images = torch.randn(batch, 3, 112, 112, device=device)
    labels = torch.randint(0, classes, (batch,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            embeddings = backbone(images)
        loss = torch.nn.functional.cross_entropy(head(embeddings.float(), labels).float(), labels)
        loss.backward()
        optimizer.step()

    return timed_step(step, device) * recipe.batch_size / batch


def face_estimate(saved: dict, device: torch.device, workers: int, log=None,
                  step_seconds: tuple[float, float] | None = None, run: str | Path | None = None) -> dict:
    """estimate.json of a face search from its settings (RUN/settings.json content); trains no trial.
    ``step_seconds``: assumed (smallest, largest) step times at the recipe's batch instead of timing them.
    ``run``: with a deployment budget, the candidates' costs go to RUN/latency.json, where the search reads them."""

    settings, options = SearchSettings.from_dict(saved["search"]), saved["options"]
    counts = _data_counts(options, settings.seed)
    recipe = resolve_recipe(options.get("recipe", "adaface"), counts, batch_size=options["batch_size"],
                            lr=options["lr"], head=options["head"], log=log)
    space = IResNetSpace(embedding_size=options["embedding_size"])
    costs = run_costs(space, settings.budget, run) if run is not None else CostTable(space)
    trials = worst_case_trials(space, settings, costs)
    small, large = smallest_and_largest(trials)
    if step_seconds is None:
        classes = counts["train_identities"]
        step_seconds = (_step_seconds(space, small.genotype, recipe, classes, device),
                        _step_seconds(space, large.genotype, recipe, classes, device))
        source = f"measured on {device} at batch {_timing_batch(recipe, device)}"
    else:
        source = "assumed (--step-seconds)"
    return forecast(trials, steps_per_epoch=math.ceil(counts["train_images"] / recipe.batch_size),
                    step_small=step_seconds[0], step_large=step_seconds[1], workers=workers,
                    budget=settings.max_trials, device=str(device),
                    extra={"data": counts, "batch_size": recipe.batch_size, "recipe": recipe.name,
                           "cache_bytes": counts["pack_images"] * IMAGE_BYTES, "step_source": source,
                           **budget_figures(space, settings, costs)})
