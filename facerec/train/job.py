"""facerec-train's job (ARCHITECTURE §7, §9): from the parsed flags of facerec.cli.train to a run folder.

Checks the flags and a resume against the run it continues (a changed setting is refused, naming the flag),
takes the folder's lock, prepares the data (facerec.data.run_data), builds the net (a genotype, a fixed
backbone, an --init checkpoint or the resumed last.pt) and the recipe's head, and trains it with
facerec.train.loop. Under torchrun only the main rank logs and writes (facerec.train.dist.main_rank_log).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from facerec.data.options import CacheOptions
from facerec.data.run_data import (
    check_identities,
    check_pack_dir,
    describe_fitness,
    parse_names,
    prepare_data,
)
from facerec.errors import FaceRecError
from facerec.model.backbones import create_backbone, list_backbones
from facerec.model.blocks import MAX_PARAMS
from facerec.model.checkpoint import build_from_checkpoint, read_checkpoint
from facerec.model.heads import create_head
from facerec.model.space import IResNetSpace
from facerec.train.config import DEMO_DEFAULTS, TrainConfig
from facerec.train.dist import barrier, init_distributed, main_rank_log, resolve_device
from facerec.train.loop import TrainingStopped, train_model
from facerec.train.recipe import recipe_from_args
from facerec.train.validation import find_bins, report_cadence
from nas_core.checkpoint import load_weights
from nas_core.command import FlagError
from nas_core.config_args import dataclass_from_args
from nas_core.genotype import Genotype
from nas_core.run_folder import RUN_FILE, check_run_folder, mark_run_folder
from nas_core.runlock import LOCK_NAME, run_lock
from nas_core.train import seed_everything


def _resume_path(text: str | None) -> Path | None:
    """The last.pt to resume from; None when there is none, also for a run folder killed before its first one
    was written (it then starts again from step 0, which is where it was)."""
    if text is None:
        return None
    path = Path(text)
    if path.is_dir():
        if not (path / "last.pt").is_file() and (path / "train.log").is_file():
            return None
        path = path / "last.pt"
    if not path.is_file():
        raise FaceRecError(f"{path}: expected a last.pt written by facerec-train (file not found)")
    return path


def build_backbone(genotype_path: str | None, arch: str | None, embedding_size: int | None, resume: Path | None,
                   dropout: float = 0.0):
    """The net to train and what its checkpoints store to rebuild it (genotype/arch + space)."""
    if genotype_path is None and arch is None:
        if resume is None:
            raise FaceRecError("facerec-train: expected --genotype RUN/result.json or --arch iresnet18")
        ckpt = read_checkpoint(resume)
        genotype = ckpt.get("genotype")
        architecture = {"genotype": Genotype.from_dict(genotype, where=f"{resume}: genotype") if genotype is not None else None,
                "arch": ckpt.get("arch"), "space": ckpt.get("space")}
        model = build_from_checkpoint(ckpt, where=str(resume))
        # Loaded here too (the trainer loads them again with the optimizer): a mismatch fails before the
        # output folder is touched, in one line.
        load_weights(model, ckpt["model"], str(resume), error=FaceRecError)
        return model, architecture
    if genotype_path is not None:
        genotype, space = _genotype_space(genotype_path, embedding_size, dropout)
        return space.build(genotype), {"genotype": genotype, "space": space.config()}
    backbone = create_backbone(arch, dropout=dropout, **({"embedding_size": embedding_size} if embedding_size else {}))
    return backbone, {"arch": arch}


def _genotype_space(genotype_path: str, embedding_size: int | None, dropout: float) -> tuple[Genotype, IResNetSpace]:
    """--genotype's net, checked: a genotype JSON (a search's result.json names its space settings, e.g. the demo's
    128-d embedding) of a net under MAX_PARAMS parameters."""
    path = Path(genotype_path)
    if not path.is_file():
        raise FaceRecError(f"{path}: expected a result.json or genotype JSON (file not found)")
    genotype = Genotype.load(path)
    document = json.loads(path.read_text())  # Genotype.load read it: it is JSON
    searched = (document.get("space") if isinstance(document, dict) else None) or {}
    if not isinstance(searched, dict):
        raise FaceRecError(f"{path}: expected 'space' to be an object of space settings, got {searched!r:.40}")
    size = embedding_size or searched.get("embedding_size", 512)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 65536:
        raise FaceRecError(f"{path}: expected a positive integer embedding_size, got {size!r:.40}")
    space = IResNetSpace(embedding_size=size, dropout=dropout)
    params = space.count_params(genotype)
    if params > MAX_PARAMS:
        raise FaceRecError(f"{path}: genotype {genotype.key()[:40]}: expected a net under {MAX_PARAMS:.0e} "
                           f"parameters, this one has {params:.3g}")
    return genotype, space


def check_net(genotype_path: str | None, arch: str | None, embedding_size: int | None, dropout: float) -> None:
    """The net a new run would build, checked without building it: a --genotype file, or an --arch name."""
    if genotype_path is None and arch is None:
        raise FaceRecError("facerec-train: expected --genotype RUN/result.json or --arch iresnet18")
    if genotype_path is not None:
        _genotype_space(genotype_path, embedding_size, dropout)
    elif arch not in list_backbones():
        raise FlagError("--arch", arch, f"expected one of {', '.join(list_backbones())}")


def init_backbone(path: str, genotype_path: str | None, arch: str | None, embedding_size: int | None,
                  dropout: float = 0.0):
    """--init: the checkpoint's net (or the --genotype/--arch one) holding the checkpoint's weights, loaded
    strictly; and what its checkpoints store to rebuild it."""
    ckpt = read_checkpoint(path)
    if genotype_path is not None or arch is not None:
        backbone, architecture = build_backbone(genotype_path, arch, embedding_size, None, dropout)
    else:
        space = {**(ckpt.get("space") or {}), "dropout": dropout}  # dropout is a training choice, not a weight
        backbone = build_from_checkpoint({**ckpt, "space": space}, where=path)
        architecture = {"genotype": Genotype.from_dict(ckpt["genotype"]) if ckpt.get("genotype") else None,
                "arch": ckpt.get("arch"), "space": space}
    try:
        backbone.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise FaceRecError(f"{path}: expected the weights of the net to train ({detail[:160]})") from None
    return backbone, architecture


# The flags that define a training: OUT/last.pt keeps them, and a resume that changes one is refused (its
# schedule, batches or data would no longer be the run being resumed). Workers, device and checkpoint cadence
# may change: they do not change the weights.
_RUN_FLAGS = ("epochs", "recipe", "batch_size", "lr", "head", "seed", "data", "subset_ids", "holdout_ids",
              "val_bins", "select", "no_augment", "embedding_size", "dropout", "cache", "cache_on_device")


def _run_flags(args: argparse.Namespace) -> dict:
    flags = {"--" + name.replace("_", "-"): getattr(args, name) for name in _RUN_FLAGS}
    flags["--data"] = str(Path(args.data).resolve()) if args.data is not None else None
    return flags


def _check_resume_flags(resume: Path, flags: dict) -> dict:
    """The flags the resumed run was started with; a changed one is refused."""
    config = read_checkpoint(resume).get("config") or {}
    saved = (config.get("flags") if isinstance(config, dict) else None) or {}  # none in older last.pt files
    if not isinstance(saved, dict):
        raise FaceRecError(f"{resume}: expected a last.pt written by facerec-train (its 'flags' are not an object)")
    for flag, value in saved.items():
        if flag in flags and flags[flag] != value:
            shown = "(not given)" if flags[flag] is None else flags[flag]
            raise FaceRecError(f"{resume}: expected {flag} {value} as in the run it resumes, got {shown} "
                               "(a changed setting is a new run: give it another --output)")
    return saved


def _selection(args: argparse.Namespace, saved_flags: dict | None) -> str:
    """--select as given, or its default: holdout when identities are held out, else last. A last.pt from
    before --select (its flags lack it) held out no identities when --data had .bin packs and selected on them:
    its resume keeps that, so it trains on the same identities."""
    legacy = bool(saved_flags) and "--select" not in saved_flags
    if legacy and args.holdout_ids is None and args.data is not None and find_bins(args.data):
        args.holdout_ids = 0
        return "bins"
    if args.select is not None:
        return args.select
    return "last" if args.holdout_ids == 0 else "holdout"


def _check_new_output(output: Path, resuming: bool) -> None:
    if not resuming and output.is_dir() and any(p.name not in (LOCK_NAME, RUN_FILE) for p in output.iterdir()):
        raise FaceRecError(f"{output}: expected a new or empty output folder; it holds files of an earlier run "
                           f"(continue that run with --resume {output}, or choose another --output)")


def check(args: argparse.Namespace) -> None:
    """Everything facerec-train can check before it locks or writes OUT (validate, then act: ARCHITECTURE §7): the
    flags against each other, a resume against the run it continues, the data and the identities asked of them,
    the net (--arch name, --genotype file and size) and OUT's kind (nas_core.run_folder). Leaves on ``args`` what
    ``run`` needs: ``resume_path``, ``saved_flags``, ``flags``, ``selection``."""
    if not 0 < args.far < 1:
        raise FaceRecError(f"--far {args.far:g}: expected a false accept rate between 0 and 1 (default "
                           f"{TrainConfig.far:g})")
    defaults = {"epochs": TrainConfig.epochs, "workers": TrainConfig.workers}
    for key, value in (DEMO_DEFAULTS if args.data is None else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.resume_path = _resume_path(args.resume)
    resume = args.resume_path
    args.saved_flags = _check_resume_flags(resume, _run_flags(args)) if resume is not None else None
    args.flags = _run_flags(args)  # as given: what a resume must repeat
    if args.saved_flags and "--select" not in args.saved_flags:
        del args.flags["--select"]  # a run from before --select stays one (see _selection)
    if args.data is not None:
        check_pack_dir(args.data)
    args.selection = _selection(args, args.saved_flags)
    _check_selection(args)
    check_identities(args.data, subset_ids=args.subset_ids, holdout_ids=args.holdout_ids,
                     fitness={"holdout": "holdout", "bins": "bins", "last": None}[args.selection])
    if resume is None and args.init is None:
        check_net(args.genotype, args.arch, args.embedding_size, args.dropout)
    # OUT's kind; its settings are last.pt's flags, compared above (a run from before --select has none of it).
    check_run_folder(args.output, "facerec-train", args.flags, holds_results=False)


def run(args: argparse.Namespace) -> int:
    """facerec-train with the flags of facerec.cli.train.build_parser, checked by ``check`` (``args.argv``: the
    command line, for the log); the exit code."""
    output, resume = Path(args.output), args.resume_path
    info = init_distributed()
    device = resolve_device(args.device, info)
    # A bad --init fails before the output folder is made; its weights do not depend on --seed.
    init = init_backbone(args.init, args.genotype, args.arch, args.embedding_size, args.dropout) if args.init else None
    if not info.is_main:  # under torchrun the main rank alone checks OUT and writes there
        return _train(args, output, resume, info, device, init)
    # One process writes into OUT: a second one refuses instead of mixing files.
    with run_lock(output, "facerec-train"):
        _check_new_output(output, resuming=args.resume is not None)
        mark_run_folder(output, "facerec-train", args.flags)
        return _train(args, output, resume, info, device, init)


def _check_selection(args: argparse.Namespace) -> None:
    """A --select that cannot be honoured fails before the output folder is made."""
    if args.selection == "holdout" and args.holdout_ids == 0:
        raise FaceRecError("--select holdout: expected held-out identities (--holdout-ids N > 0), "
                           "got --holdout-ids 0")
    if args.selection == "bins":
        if args.data is None or not find_bins(args.data, parse_names(args.val_bins)):
            raise FaceRecError(f"{args.data or '--data'}: expected .bin verification packs for --select bins")
        if args.holdout_ids:
            raise FaceRecError(f"--holdout-ids: expected none with --select bins, got {args.holdout_ids}")


def _prepare(args: argparse.Namespace, output: Path, info, log):
    """The run's data: held-out identities (or the .bin packs with --select bins) scored every epoch, the other
    .bin packs of --data as a report; and the report's cadence in epochs."""
    fitness = {"holdout": "holdout", "bins": "bins", "last": None}[args.selection]
    # Without --data the main rank writes the demo set into OUT before the others read it. The report-only
    # packs are scored on the main rank alone: only it loads them.
    if args.data is None and not info.is_main:
        barrier(info)
    data = prepare_data(args.data, output, subset_ids=args.subset_ids, holdout_ids=args.holdout_ids,
                        val_bins=parse_names(args.val_bins), fitness=fitness,
                        report_bins=args.report_every != 0 and info.is_main, seed=args.seed,
                        augment=not args.no_augment, need_val=False,
                        **asdict(dataclass_from_args(CacheOptions, args)))
    if args.data is None and info.is_main:
        barrier(info)
    every = report_cadence(data.report_sets, data.info["train_images"], info.world_size) \
        if args.report_every == "auto" else args.report_every
    on = describe_fitness(data.info["fitness_on"])
    if args.selection == "last":
        log.info("--select last: model.pt is the last epoch" + (f"; scored every epoch (not a choice): {on}"
                                                                  if data.val_sets else ""))
    else:
        log.info(f"--select {args.selection}: model.pt is the epoch with the best mean 10-fold accuracy on {on}")
    if not any(vs.name == "holdout" for vs in data.val_sets):
        log.info("no held-out identities: model.pt carries no calibrated verification threshold (facerec-verify "
                 "then needs --threshold)")
    if data.report_sets:
        log.info(f"benchmark packs {data.info['report_sets']} (pairs): a report only, never a choice; scored "
                 f"every {every} epoch(s) ({args.report_every}), after the last one and on model.pt")
    data.info["selection"] = {"select": args.selection, "on": data.info["fitness_on"]}
    data.info["report_every"] = every if data.report_sets else 0
    return data


def _train(args: argparse.Namespace, output: Path, resume: Path | None, info, device, init) -> int:
    with main_rank_log(output / "train.log", info) as log:
        log.info("facerec-train " + " ".join(sys.argv[1:] if args.argv is None else args.argv))
        if args.resume is not None and resume is None:
            log.info(f"{args.resume} holds no last.pt (stopped before its first checkpoint): starting at step 0")
        if args.data is None:
            log.info("no --data: training on the built-in synthetic demo face set (facerec.data.demo, 20 identities "
                     f"x 12 images, 112x112) with a CPU-sized budget ({args.epochs} epochs, batch {args.batch_size})")
        data = _prepare(args, output, info, log)
        seed_everything(args.seed)  # the initial weights depend on --seed alone
        backbone, architecture = init or build_backbone(args.genotype, args.arch, args.embedding_size, resume, args.dropout)
        if args.init:
            log.info(f"weights from {args.init}: a new run (epoch 0, fresh optimizer), not a resume")
        recipe = recipe_from_args(args, data.info, log)  # logged with its reasons; stored in every checkpoint
        head = create_head(recipe.head, backbone.num_features, data.num_classes, **recipe.head_options)
        config = recipe.train_config(epochs=args.epochs, seed=args.seed, workers=args.workers,
                                     checkpoint_every=args.checkpoint_every, max_nan_steps=args.max_nan_steps,
                                     far=args.far)
        params = sum(p.numel() for p in backbone.parameters())
        what = architecture["genotype"].key() if architecture.get("genotype") is not None else architecture.get("arch")
        log.info(f"model {what}: {params:,} parameters; data {data.source}: {data.info['train_images']} images of "
                 f"{data.num_classes} identities; "
                 f"device {device}, world size {info.world_size}; lr "
                 + (f"milestones {config.lr_milestones()}" if config.schedule == "step" else config.schedule))
        run_config = {**data.info, "head": recipe.head, "params": params, "world_size": info.world_size,
                      "flags": args.flags}
        try:
            outcome = train_model(backbone, head, data.train_set, config, device=device, val_sets=data.val_sets,
                                  info=info, output=output, resume=resume, architecture=architecture, run_config=run_config,
                                  select="last" if args.selection == "last" else "best",
                                  report_sets=data.report_sets, report_every=data.info["report_every"],
                                  progress=not args.no_progress)
        except TrainingStopped as stopped:
            log.info(f"{stopped}: wrote {output / 'last.pt'}; resume with --resume {output}")
            return 128 + stopped.signum
        for line in _done_lines(outcome, args.selection, output):
            log.info(line)
    return 0


def _done_lines(outcome, selection: str, output: Path) -> list[str]:
    """The log's summary: model.pt's epoch and what it was selected on, its benchmark scores (a report) and
    the share of the training time they took."""
    best = f"; best epoch {outcome.best_epoch} (mean verification accuracy {outcome.best_score:.4f})" \
        if outcome.best_score is not None else ""
    lines = [f"done: {outcome.global_step} steps in {outcome.seconds:.1f} s{best}; wrote {output / 'model.pt'}: "
             f"epoch {outcome.model_epoch}, selected with --select {selection}"]
    bench = outcome.model_benchmarks
    if bench:
        seconds = sum(h.get("benchmark_seconds", 0.0) for h in outcome.history)
        lines.append(f"model.pt (epoch {bench['epoch']}) on the benchmark packs, a report not a choice: "
                     + ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in bench["results"].items())
                     + f"; scoring them during training took {seconds:.1f} s "
                     f"({100 * seconds / max(outcome.seconds, 1e-9):.1f} % of the run)")
    return lines
