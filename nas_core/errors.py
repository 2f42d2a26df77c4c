"""The one user-facing error type of nas_core and the one place a CLI turns it into exit code 2."""

import re
import sys
from collections.abc import Callable


class NasError(Exception):
    """Bad input the user can fix (unknown name, missing file, malformed genotype).

    The message reads ``<file or thing>: <what was expected>`` and is printed as one line.
    Packages that build on nas_core subclass it so one ``except`` covers all of them.
    """


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI body; user errors become one ``error: ...`` line on stderr and exit code 2."""
    try:
        return body()
    except NasError as exc:
        # One line whatever the message holds: a reason quoted from a library (torch's state-dict
        # mismatch lists, a parser's context) may span several.
        print("error: " + re.sub(r"\s*[\r\n]+\s*", " ", str(exc).strip()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
