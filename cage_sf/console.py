"""What reaches the terminal: stderr carries cage-sf's own one-line errors, nothing else.

Sample Factory logs through its `rl` logger to stderr, tracebacks included, from every process. A user who
starts a run and walks away should find one line saying why it ended, so Sample Factory's console log goes
to stdout without tracebacks (those stay in the run's `sf_log.txt`), and it is muted while a command has not
started a run: its start-up lines (git revision, model registration) would otherwise precede a usage error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SF_LOGGER = "rl"


class _WithoutTraceback(logging.Formatter):
    """The wrapped formatter's line without the exception or stack text (other handlers still get them)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info or record.stack_info):
            return self.inner.format(record)
        bare = logging.makeLogRecord(record.__dict__ | {"exc_info": None, "exc_text": None, "stack_info": None})
        return self.inner.format(bare)


def route_sf_console() -> None:
    """Sample Factory's console handler writes to stdout, without tracebacks. Idempotent; every process needs it."""
    from sample_factory.utils.utils import stream_handler

    stream_handler.setStream(sys.stdout)
    if not isinstance(stream_handler.formatter, _WithoutTraceback):
        stream_handler.setFormatter(_WithoutTraceback(stream_handler.formatter))


@contextmanager
def sf_log_muted() -> Iterator[None]:
    """Drop Sample Factory's log records (a logger filter: it survives SF's import resetting the handlers)."""
    logger = logging.getLogger(SF_LOGGER)
    mute = logging.Filter("muted")  # passes only records of a logger named "muted": none of SF's
    logger.addFilter(mute)
    try:
        yield
    finally:
        logger.removeFilter(mute)
