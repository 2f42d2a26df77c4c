"""The log file of a long job (OUT/train.log, RUN/search.log), echoed to the terminal through tqdm.

Lines go through ``tqdm.write`` so they do not break a progress bar that is being drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

LOGGER_NAME = "facerec"


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record))


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


@contextmanager
def log_to(path: str | Path | None, *, echo: bool = True) -> Iterator[logging.Logger]:
    """Log INFO and above to ``path`` (appending, so a resumed job keeps its history) and the terminal."""
    logger = get_logger()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handlers: list[logging.Handler] = []
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        handlers.append(file_handler)
    if echo:
        terminal = _TqdmHandler()
        terminal.setFormatter(logging.Formatter("%(message)s"))
        handlers.append(terminal)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
