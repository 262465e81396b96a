"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class UsageError(Exception):
    """Bad input a user can fix (unknown preset, bad override, missing dependency, ...)."""
