"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class UsageError(Exception):
    """Bad input a user can fix (unknown preset, bad override, missing dependency, ...)."""


class RunFailure(Exception):
    """A run that started and cannot go on (a component failed, no frames): one line, a non-zero exit."""
