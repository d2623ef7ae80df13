"""The one error type users see.

Anything raised as `UserError` is printed by the CLI as a single line (no traceback) and exits with
code 2. Messages say what is wrong and how to fix it, and name the file (and line) when there is one.
"""


class UserError(Exception):
    """Bad input or an unusable file: a one-line, actionable message."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


def where(path, line: int | None = None) -> str:
    """`file` or `file:line`, for error messages."""
    return f"{path}:{line}" if line is not None else str(path)
