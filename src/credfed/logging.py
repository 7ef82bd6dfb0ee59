"""structlog set-up: JSON lines when stderr is not a terminal, readable
otherwise. Log events carry ids, codes and counts, never personal data."""

from __future__ import annotations

import logging
import sys

import structlog


def quiet_grpc_logs() -> None:
    """grpc logs an exception escaping a handler with its message and
    traceback, and a message may quote the request (a name, a birth date).
    The access log records every such crash by exception type instead."""
    logging.getLogger("grpc").setLevel(logging.CRITICAL)


def configure(level: str = "info", json: bool | None = None) -> None:
    quiet_grpc_logs()
    as_json = not sys.stderr.isatty() if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
