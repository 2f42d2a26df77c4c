"""The options of a face search and of a face ranking study, as data (ARCHITECTURE §3, §4): each flag of
facerec-search and facerec-study is generated from these fields (nas_core.config_args), and the rankings a face
search can run with (``--ranking``). Dependency-free, so a command's ``--help`` never imports torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nas_core.values import SEED_MAX


@dataclass(frozen=True)
class SearchRanking:
    """How a face search trains and scores its trials."""

    name: str
    description: str
    static: bool = False  # every macro trial E_min epochs (the search's +1/+2 epoch steps off)
    truncated: bool = False  # a trial is the first epochs of a --ranking-full-epochs training (same lr schedule)
    metric: str = "accuracy"  # "accuracy": 10-fold accuracy; "auc": pair ROC AUC (both in percent)


SEARCH_RANKINGS = {r.name: r for r in (
    SearchRanking("paper", "the paper's dynamic epochs (E_min, +1 per depth, +2 per width tried), best-epoch "
                           "10-fold accuracy"),
    SearchRanking("static", "every macro trial E_min epochs, best-epoch 10-fold accuracy", static=True),
    SearchRanking("truncated", "every macro trial the first E_min epochs of a full training's lr schedule, "
                               "10-fold accuracy", static=True, truncated=True),
    SearchRanking("truncated-auc", "as truncated, scored by the held-out pairs' ROC AUC", static=True,
                  truncated=True, metric="auc"),
)}
DEFAULT_FACE_RANKING = "paper"


def _flag(text: str, **meta: Any) -> dict[str, Any]:
    return {"help": text, **meta}


@dataclass(frozen=True)
class FaceSearchOptions:
    """The data and the trials' training of a face search (RUN/settings.json "options"). Not given (None): the
    value for real data, or the built-in demo set's without --data (OPTION_DEFAULTS)."""

    data: str | None = field(default=None, metadata=_flag(
        "face pack folder (train.rec/.idx/property [+ .bin]); not given: the built-in synthetic demo set",
        metavar="DIR", path="folder"))
    subset_ids: int | None = field(default=None, metadata=_flag("search on N identities (seeded choice)",
                                                                metavar="N", minimum=2))
    holdout_ids: int | None = field(default=None, metadata=_flag(
        "identities held out of training; the fitness is 10-fold accuracy on their pairs (default 10%, none with "
        "--val-bins; demo 4)", metavar="N", minimum=0))
    val_bins: str | None = field(default=None, metadata=_flag(
        "rank on these .bin packs of --data instead, e.g. lfw,cfp_fp,agedb_30 (the paper's protocol: a net ranked "
        "on a benchmark scores optimistically on it)", metavar="NAMES", names=True))
    ranking: str = field(default=DEFAULT_FACE_RANKING, metadata=_flag(
        "how trials are trained and scored: " + "; ".join(f"{r.name}: {r.description}" for r in SEARCH_RANKINGS.values())
        + " (README 'Does the search pay?')", choices=tuple(sorted(SEARCH_RANKINGS))))
    ranking_full_epochs: int = field(default=12, metadata=_flag(
        "truncated rankings: the length of the training whose first E_min epochs a trial is", positive=True))
    batch_size: int | None = field(default=None, metadata=_flag(
        "global batch of a trial (default: the recipe's; demo 32)", positive=True))
    lr: float | None = field(default=None, metadata=_flag(
        "SGD learning rate of a trial (default: the recipe's; demo 0.05)", positive=True))
    head: str | None = field(default=None, metadata=_flag(
        "margin head: adaface, arcface, cosface (default: the recipe's; demo adaface)"))
    embedding_size: int | None = field(default=None, metadata=_flag("embedding size (default 512; demo 128)",
                                                                    positive=True))
    workers: int | None = field(default=None, metadata=_flag("data loader workers (default 2; demo 0)", minimum=0))


# The trial-training options' values with real data and with the built-in demo set when not given (None with
# real data: the recipe's, facerec.train.recipe, resolved on the run's data).
OPTION_DEFAULTS = {"batch_size": (None, 32), "lr": (None, 0.05), "head": (None, "adaface"), "workers": (2, 0),
                   "holdout_ids": (None, 4), "subset_ids": (None, None), "embedding_size": (512, 128)}


@dataclass(frozen=True)
class FaceStudyOptions:
    """facerec-study ranking: the candidates, the trainings of each, and the data they train on (the module
    docstring of facerec.cli.study says what the study does)."""

    depths: tuple[int, ...] | None = field(default=None, metadata=_flag(
        "grid of candidates: these depths (blocks) ...", positive=True, metavar="D,D,..."))
    widths: tuple[int, ...] | None = field(default=None, metadata=_flag(
        "... times these widths (each W_max − k·W_res)", positive=True, metavar="W,W,..."))
    depth_steps: int = field(default=3, metadata=_flag("without --depths: Grow candidates", positive=True))
    width_steps: int = field(default=3, metadata=_flag("without --depths: Prune candidates", positive=True))
    static_epochs: tuple[int, ...] | None = field(default=None, metadata=_flag(
        "epochs of the static trials (default: E_min, 2, 4)", positive=True, metavar="E,E,..."))
    reference_epochs: int | None = field(default=None, metadata=_flag(
        "epochs of the full training (default: twice the longest dynamic trial)", positive=True))
    reference_seeds: int = field(default=1, metadata=_flag(
        "full trainings per candidate (run seeds SEED .. SEED+N-1), averaged", positive=True))
    truncated: tuple[int, ...] = field(default=(2, 3), metadata=_flag(
        "rank by the first K epochs of the full training (run seed SEED) for each K", positive=True,
        metavar="K,K,..."))
    bootstrap: int = field(default=2000, metadata=_flag("resamples of the 95% intervals", positive=True))
    max_trainings: int | None = field(default=None, metadata=_flag(
        "stop after N new trainings (run the study in parts)", positive=True, metavar="N"))
    subset_ids: int | None = field(default=None, metadata=_flag(
        "train on N identities (seeded choice), as the search can", metavar="N", minimum=2))
    holdout_ids: int | None = field(default=None, metadata=_flag(
        "identities held out for the fitness pairs (default 10%)", metavar="N", minimum=2))
    embedding_size: int = field(default=512, metadata=_flag("embedding size", positive=True))
    workers: int = field(default=0, metadata=_flag("data loader workers", minimum=0))
    seed: int = field(default=0, metadata=_flag("seed of the identity split and of the first run", minimum=0,
                                                maximum=SEED_MAX))
