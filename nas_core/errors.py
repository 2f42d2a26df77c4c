"""The one user-facing error type of nas_core and the one place a CLI turns it into exit code 2."""

import re
import sys
import warnings
from collections.abc import Callable


class NasError(Exception):
    """Bad input the user can fix (unknown name, missing file, malformed genotype).

    The message reads ``<file or thing>: <what was expected>`` and is printed as one line.
    Packages that build on nas_core subclass it so one ``except`` covers all of them.
    """


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI body; user errors become one ``error: ...`` line on stderr and exit code 2.

    Warnings raised by libraries while the body runs are held back: a run that ends in a user error prints
    that one line alone (the readers turn what a library would warn about, such as a pickle torch does not
    expect or numbers out of range, into the error itself); a run that succeeds shows them at its end.
    """
    failure: BaseException | None = None
    with warnings.catch_warnings(record=True) as caught:
        try:
            code = body()
        except NasError as exc:
            # One line whatever the message holds: a reason quoted from a library (a parser's context) may
            # span several.
            print("error: " + re.sub(r"\s*[\r\n]+\s*", " ", str(exc).strip()), file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        except BaseException as exc:  # noqa: BLE001  (a bug: re-raised below, after the warnings before it)
            failure = exc
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if failure is not None:
        raise failure
    return code
