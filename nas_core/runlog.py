"""The log file of a long job (RUN/search.log, OUT/train.log), echoed to the terminal above its tqdm bar,
and the progress bar itself.

One helper for every command: the file appends, so a resumed job keeps its history; terminal lines go
through tqdm's ``logging_redirect_tqdm`` so they never break a progress bar being drawn. Bars are drawn
only on a terminal and cleared when a job fails (``progress_bar``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


@contextmanager
def log_to(path: str | Path | None, logger: str = "nas_core", *, echo: bool = True) -> Iterator[logging.Logger]:
    """Log INFO and above of ``logger`` to ``path`` (appending) and, with ``echo``, the terminal."""
    log = logging.getLogger(logger)
    old_level, old_propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = False
    handlers: list[logging.Handler] = []
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="a", encoding="utf-8"))
        handlers[-1].setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    if echo:
        handlers.append(logging.StreamHandler(sys.stdout))
        handlers[-1].setFormatter(logging.Formatter("%(message)s"))
    for handler in handlers:
        log.addHandler(handler)
    try:
        if echo:
            with logging_redirect_tqdm(loggers=[log]):
                yield log
        else:  # tqdm's redirect would add a terminal handler of its own
            yield log
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(old_level)
        log.propagate = old_propagate


@contextmanager
def progress_bar(**options) -> Iterator[tqdm]:
    """The progress bar of every command: tqdm on stderr, drawn only when stderr is a terminal (a log file or
    a pipe gets no bar residue), and cleared rather than left when the job stops on an error, so the error
    is the one line left on stderr. ``options`` are tqdm's (total, unit, desc, disable=True to hide it)."""
    options = {"file": sys.stderr, "dynamic_ncols": True, **options}
    if options.get("disable") is not True:
        options["disable"] = None  # None: tqdm draws only on a terminal
    bar = tqdm(**options)
    try:
        yield bar
    except BaseException:
        bar.leave = False  # close() then erases the bar instead of leaving its last state
        bar.close()
        raise
    bar.close()
