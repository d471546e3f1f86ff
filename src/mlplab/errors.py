"""The one exception type for mistakes a user can fix (bad input, bad config, missing files).

The CLI prints it as a single line and exits with status 2; library callers can catch it.
`assert` stays reserved for internal invariants.
"""

from __future__ import annotations


class MlplabError(Exception):
    """A user-facing error: the message says what is wrong and what to do about it.

    >>> str(MlplabError("chunk size must be positive, got 0", hint="pass --chunk-rows 65536"))
    'chunk size must be positive, got 0; pass --chunk-rows 65536'
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)
