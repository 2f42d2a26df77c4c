"""facerec-eval: evaluate a face model (.onnx or facenas .pt) on LFW-style packs, IJB-B/C and TinyFace.

    facerec-eval --model model.onnx --data faces_webface_112x112 --protocol lfw --output lfw.json
    facerec-eval --model model.pt --data IJB_release --protocol ijbc --output ijbc.json --features-out ijbc.npz
    facerec-eval --features-in ijbc.npz --protocol ijbc --no-detector-score   # re-score in seconds, no model
    facerec-eval --model model.pt --data packs/orl --protocol orl      # your own pairs (facerec-data make-bin)

Every .bin pack in --data is a verification set scored 10-fold (ARCHITECTURE §6): lfw, cfp_fp, cplfw,
agedb_30, calfw and any other, reported under its file's stem.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from eval_protocols.errors import EvalError
from eval_protocols.features import load_features, save_features
from eval_protocols.protocols import PROTOCOL_ORDER, Scored, create_protocol, list_protocols
from eval_protocols.report import build_report, markdown_table, write_report
from eval_protocols.verification import VERIFICATION_SETS, VerificationProtocol, verification_packs
from nas_core.errors import run_cli
from nas_core.io import output_file
from nas_core.runlog import progress_bar


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facerec-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="an .onnx file or a facenas .pt checkpoint (not needed with --features-in)")
    p.add_argument("--data", help="the data folder as you have it: faces_*/ with .bin packs, IJB_release/ "
                   "(or IJBC/, IJBB/), the root holding tinyface/, or one root holding several of them")
    p.add_argument("--protocol", default="all",
                   help=f"{', '.join(PROTOCOL_ORDER)}, or the stem of any .bin pack in --data (e.g. orl for "
                        "orl.bin, scored 10-fold like lfw); 'all' (default) runs whatever --data holds")
    p.add_argument("--output", help="write the JSON result here (plus <stem>_roc.png for IJB and <stem>.log)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--features-out", help="also save the features (.npz) to re-score later without the model")
    p.add_argument("--features-in", help="re-score features saved by --features-out (no model, no images)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="flip fusion emb(x) + emb(fliplr x) (default on; --no-flip turns it off)")
    p.add_argument("--detector-score", action=argparse.BooleanOptionalAction, default=True,
                   help="IJB: weight image features by the detector score (default on)")
    p.add_argument("--norm-score", action=argparse.BooleanOptionalAction, default=True,
                   help="IJB: keep each image feature's norm when pooling templates (default on, as "
                        "InsightFace; --no-norm-score L2-normalises image features first)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_cli(lambda: _run(args), hold_native_output=True)


def _run(args: argparse.Namespace) -> int:
    started = time.time()
    for path in (args.output, args.features_out):
        if path:
            output_file(path)  # a folder or a file in the way fails before any image is embedded
    runtime = None
    if args.features_in:
        features, meta = load_features(args.features_in)
        names = list(features) if args.protocol == "all" else [args.protocol]
        if args.protocol != "all" and args.protocol not in features:
            raise EvalError(f"{args.features_in}: expected features for {args.protocol}; it holds {', '.join(features)}")
        protocols = {name: _protocol(name) for name in names}
        model_name = meta.get("model", str(args.features_in))
        for name in names:
            _check_finite(features[name], args.features_in, name)
    else:
        protocols, features, model_name, runtime = _extract(args)
    scored: dict[str, Scored] = {
        name: protocols[name].score(features[name], detector_score=args.detector_score, norm_score=args.norm_score)
        for name in protocols
    }
    report = build_report(model_name, args.protocol, {name: s.result for name, s in scored.items()})
    table = markdown_table(report)
    notes = [n for s in scored.values() for n in s.notes]
    if args.features_out and not args.features_in:
        save_features(args.features_out, {n: features[n] for n in protocols}, {"model": model_name, "flip": args.flip})
    if args.output:
        curves = {name: s.roc for name, s in scored.items() if s.roc is not None}
        log = f"facerec-eval {' '.join(sys.argv[1:])}\n" + (f"runtime: {runtime}\n" if runtime else "")
        log += f"{table}\n" + "".join(f"note: {n}\n" for n in notes)
        log += f"seconds: {time.time() - started:.1f}\n"
        write_report(args.output, report, curves, log_text=log)
    print(table, end="")
    if runtime:
        print(f"embedded with {runtime}", file=sys.stderr)
    for note in dict.fromkeys(notes):  # after the results: a failed run's stderr is its one error line
        print(f"warning: {note}", file=sys.stderr)
    return 0


def _protocol(name: str):
    """The registered protocol of ``name``, else the 10-fold protocol of a pack of that stem."""
    return create_protocol(name) if name in list_protocols() else VerificationProtocol(name)


def _select(protocol: str, data: Path) -> dict[str, tuple[object, Path]]:
    """{name: (protocol, where its data lies)}: ``protocol`` alone, or for 'all' every protocol --data holds,
    every .bin pack under its stem."""
    packs = verification_packs(data)
    clash = sorted(set(packs) & (set(list_protocols()) - set(VERIFICATION_SETS)))
    if clash:
        raise EvalError(f"{packs[clash[0]]}: expected a verification pack named other than the {clash[0]} "
                        "protocol; rename it")
    if protocol != "all" and protocol not in list_protocols():
        if protocol not in packs:
            present = f"; its .bin packs: {', '.join(packs)}" if packs else ""
            raise EvalError(f"{data}: expected {protocol}.bin in it or in a faces_* subfolder, or --protocol one "
                            f"of {', '.join(PROTOCOL_ORDER)}, all{present}")
        return {protocol: (VerificationProtocol(protocol), packs[protocol])}
    chosen = {}
    for name in PROTOCOL_ORDER if protocol == "all" else (protocol,):
        entry = create_protocol(name)
        path = entry.locate(data)
        if path is None and protocol != "all":
            raise EvalError(entry.expected(data))
        if path is not None:
            chosen[name] = (entry, path)
    if protocol == "all":  # packs of other names after the benchmarks, in name order
        chosen.update({name: (VerificationProtocol(name), path) for name, path in packs.items() if name not in chosen})
    return chosen


def _extract(args: argparse.Namespace):
    from facerec.deploy.embedding import open_model

    if not args.model:
        raise EvalError("--model: expected an .onnx file or a facenas .pt checkpoint (or use --features-in)")
    if not args.data:
        raise EvalError("--data: expected the data folder (or use --features-in)")
    data = Path(args.data)
    if not data.exists():
        raise EvalError(f"{data}: folder not found; expected the evaluation data folder")
    if not Path(args.model).is_file():
        raise EvalError(f"{args.model}: model file not found; expected an .onnx file or a facenas .pt checkpoint")
    selected = _select(args.protocol, data)
    if not selected:
        raise EvalError(f"{data}: expected .bin packs (or a faces_* folder), IJB_release/ (IJBB/, IJBC/) or tinyface/")
    protocols = {name: entry for name, (entry, _) in selected.items()}
    # Check every input before any long work, so bad data fails fast and nothing is written.
    prepared = {name: entry.prepare(path) for name, (entry, path) in selected.items()}
    # --device passes through unchanged: None lets the model's runtime pick (CUDA when it has it).
    embedder = open_model(args.model, device=args.device, batch_size=args.batch_size)
    total = sum(protocols[n].count_images(prepared[n]) for n in protocols)
    features = {}
    # The bar and the log (--output) name the onnxruntime provider (or torch device) that runs.
    with progress_bar(total=total, unit="img", desc=f"embedding ({embedder.runtime})") as bar:
        for name in protocols:
            bar.set_postfix_str(name)
            features[name] = protocols[name].extract(
                prepared[name], embedder, flip=args.flip, batch_size=args.batch_size, progress=bar)
            _check_finite(features[name], args.model, name)
    return protocols, features, str(args.model), embedder.runtime


def _check_finite(arrays: dict, source: str, protocol: str) -> None:
    """Scores and ROC curves need finite numbers; NaN or inf features come from a broken model (or file)."""
    import numpy as np

    for key, values in arrays.items():
        rows = np.asarray(values).reshape(len(values), -1) if np.ndim(values) else np.asarray(values).reshape(1, 1)
        if rows.dtype.kind == "f" and not np.isfinite(rows).all():
            bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
            raise EvalError(f"{source}: expected finite {protocol} {key}; NaN or inf in {len(bad)} of {len(rows)} "
                            f"rows (first: row {bad[0]}), a corrupt model?")


if __name__ == "__main__":
    raise SystemExit(main())
