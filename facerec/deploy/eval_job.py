"""The facerec-eval job: embed the images of every protocol --data holds with a model (or read saved features),
score them as ARCHITECTURE §6 says, print the table and write the JSON contract of ARCHITECTURE §7.

Every input is checked before any image is embedded, so bad data fails fast and nothing is written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from eval_protocols.errors import EvalError
from eval_protocols.features import load_features, save_features
from eval_protocols.protocols import PROTOCOL_ORDER, Scored, create_protocol, list_protocols
from eval_protocols.report import build_report, markdown_table, write_report
from eval_protocols.verification import VERIFICATION_SETS, VerificationProtocol, verification_packs
from facerec.deploy.embedding import open_model
from facerec.deploy.options import EvalOptions
from nas_core.io import output_file
from nas_core.runlog import progress_bar


def run_eval(options: EvalOptions) -> int:
    """Embed and score (or re-score --features-in), print the table, write --output; 0 on success."""
    started = time.time()
    for path in (options.output, options.features_out):
        if path:
            output_file(path)  # a folder or a file in the way fails before any image is embedded
    runtime = None
    if options.features_in:
        features, meta = load_features(options.features_in)
        names = list(features) if options.protocol == "all" else [options.protocol]
        if options.protocol != "all" and options.protocol not in features:
            raise EvalError(f"{options.features_in}: expected features for {options.protocol}; it holds {', '.join(features)}")
        protocols = {name: _protocol(name) for name in names}
        model_name = meta.get("model", str(options.features_in))
        for name in names:
            _check_finite(features[name], options.features_in, name)
    else:
        protocols, features, model_name, runtime = _extract(options)
    scored: dict[str, Scored] = {
        name: protocols[name].score(features[name], detector_score=options.detector_score, norm_score=options.norm_score)
        for name in protocols
    }
    report = build_report(model_name, options.protocol, {name: s.result for name, s in scored.items()})
    table = markdown_table(report)
    notes = [n for s in scored.values() for n in s.notes]
    if options.features_out and not options.features_in:
        save_features(options.features_out, {n: features[n] for n in protocols}, {"model": model_name, "flip": options.flip})
    if options.output:
        curves = {name: s.roc for name, s in scored.items() if s.roc is not None}
        log = f"facerec-eval {' '.join(sys.argv[1:])}\n" + (f"runtime: {runtime}\n" if runtime else "")
        log += f"{table}\n" + "".join(f"note: {n}\n" for n in notes)
        log += f"seconds: {time.time() - started:.1f}\n"
        write_report(options.output, report, curves, log_text=log)
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


def _extract(options: EvalOptions):
    if not options.model:
        raise EvalError("--model: expected an .onnx file or a facenas .pt checkpoint (or use --features-in)")
    if not options.data:
        raise EvalError("--data: expected the data folder (or use --features-in)")
    data = Path(options.data)
    if not data.exists():
        raise EvalError(f"{data}: folder not found; expected the evaluation data folder")
    if not Path(options.model).is_file():
        raise EvalError(f"{options.model}: model file not found; expected an .onnx file or a facenas .pt checkpoint")
    selected = _select(options.protocol, data)
    if not selected:
        raise EvalError(f"{data}: expected .bin packs (or a faces_* folder), IJB_release/ (IJBB/, IJBC/) or tinyface/")
    protocols = {name: entry for name, (entry, _) in selected.items()}
    # Check every input before any long work, so bad data fails fast and nothing is written.
    prepared = {name: entry.prepare(path) for name, (entry, path) in selected.items()}
    # --device auto is resolved by the model's runtime: torch's or onnxruntime's CUDA when it has it.
    embedder = open_model(options.model, device=options.device, batch_size=options.batch_size)
    total = sum(protocols[n].count_images(prepared[n]) for n in protocols)
    features = {}
    # The bar and the log (--output) name the onnxruntime provider (or torch device) that runs.
    with progress_bar(total=total, unit="img", desc=f"embedding ({embedder.runtime})",
                      disable=not options.progress) as bar:
        for name in protocols:
            bar.set_postfix_str(name)
            features[name] = protocols[name].extract(
                prepared[name], embedder, flip=options.flip, batch_size=options.batch_size, progress=bar)
            _check_finite(features[name], options.model, name)
    return protocols, features, str(options.model), embedder.runtime


def _check_finite(arrays: dict, source: str, protocol: str) -> None:
    """Scores and ROC curves need finite numbers; NaN or inf features come from a broken model (or file)."""
    for key, values in arrays.items():
        rows = np.asarray(values).reshape(len(values), -1) if np.ndim(values) else np.asarray(values).reshape(1, 1)
        if rows.dtype.kind == "f" and not np.isfinite(rows).all():
            bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
            raise EvalError(f"{source}: expected finite {protocol} {key}; NaN or inf in {len(bad)} of {len(rows)} "
                            f"rows (first: row {bad[0]}), a corrupt model?")
