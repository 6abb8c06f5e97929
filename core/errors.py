"""The two exceptions every layer shares: what a user can fix, and a stop that was asked for.

`UserError` is everything a person can act on (a missing corpus, a bad option, a file that cannot be
read): its message is one line naming the thing and what to do, and the CLI and the pages show it as
it is. Any other exception is a bug: the CLI and the pages say "internal error" and log the traceback.
`Cancelled` is not an error: work stopped because someone asked it to.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem the user can fix; its message is shown to them as it is, on one line. A ValueError,
    so code written to catch bad values before this class existed still does."""


class Cancelled(Exception):
    """A stop that was asked for (a Cancel button, a cancel flag): raised where the work looks next."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
