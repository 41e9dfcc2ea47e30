"""The command line's console: every log record printed once, for a person by default, as JSON lines on request."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from imgclf.errors import ImgclfError
from imgclf.log import in_lambda

log = logging.getLogger("imgclf_cli")

# What every LogRecord carries; anything else on a record came in through `extra=`.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


Command = Callable[[argparse.Namespace], int]


def guarded(command: Command, *also: type[Exception]) -> Command:
    """A command that answers a project error (or one of `also`) with one line on stderr and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ImgclfError, *also) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record was logged with."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")}


def is_own(record: logging.LogRecord) -> bool:
    """Whether the command itself wrote the line (its output), rather than the code it drives (a log)."""
    return record.name == log.name or record.name.startswith(log.name + ".")


class Human(logging.Formatter):
    """The command's own lines as they are; anything else as `LEVEL logger: message  key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        line = record.getMessage()
        if not is_own(record):
            extra = " ".join(f"{k}={v}" for k, v in fields(record).items())
            line = f"{record.levelname} {record.name}: {line}" + (f"  {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the fields it was logged with."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage().strip(),
            **fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleHandler(logging.Handler):
    """Writes records to the standard output: the command's own from INFO up, the rest from `threshold` up."""

    def __init__(self, formatter: logging.Formatter, threshold: int):
        super().__init__()
        self.setFormatter(formatter)
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        # This rule only: Powertools adds a SuppressFilter to the root handlers for each logger it sets up, lest
        # its own handler and the root's print a record twice. Outside Lambda its loggers print nothing
        # themselves (imgclf.log), so that filter would only hide them.
        if _printed_already(record):
            return False
        return record.levelno >= (logging.INFO if is_own(record) else self.threshold)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout  # looked up each time: tests swap it
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _printed_already(record: logging.LogRecord) -> bool:
    """Whether a Powertools logger on the record's way up printed it itself (in Lambda they do)."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        handler = getattr(logger, "powertools_handler", None)
        if handler is not None and not isinstance(handler, logging.NullHandler):
            return True
        logger = logger.parent if logger.propagate else None
    return False


@contextmanager
def configured(*, json_lines: bool = False, verbose: int = 0) -> Iterator[ConsoleHandler]:
    """Print every log record once, in one format, while the command runs; JSON lines with --json or in Lambda."""
    # Quiet: the command's lines and warnings. -v: the INFO log of the code it drives. -vv: DEBUG, botocore's too.
    threshold = {0: logging.WARNING, 1: logging.INFO}.get(int(verbose), logging.DEBUG)
    handler = ConsoleHandler(JsonLines() if json_lines or in_lambda() else Human(), threshold)
    root = logging.getLogger()
    saved = root.level, log.level
    root.addHandler(handler)
    root.setLevel(threshold)
    log.setLevel(min(threshold, logging.INFO))
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        log.setLevel(saved[1])
