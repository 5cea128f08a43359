"""Logging to stderr, one line per record (text, or one JSON object for log collectors), with every known
secret masked.

shipper never formats a secret into a message; masking the values of the credential variables in every
record (arguments, `extra=` fields and tracebacks included) is the second wall, for text that comes from
libraries.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import sys

SECRET_ENV_VARS = ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN")
MASK = "***"
# What every LogRecord has; anything else on a record came from `extra=` and is a structured field
# (uvicorn's color_message repeats the message with terminal colours).
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                                     "color_message"}


def secret_values(extra_env_vars: tuple[str, ...] = ()) -> list[str]:
    names = SECRET_ENV_VARS + tuple(extra_env_vars)
    return [v for v in (os.environ.get(n, "") for n in names) if len(v) >= 4]


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = secrets

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            for key, value in _fields(record).items():
                if isinstance(value, str):
                    setattr(record, key, self.redact(value))
        return True


def _fields(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, the `extra=` fields, and a traceback
    as `exception`; what JSON cannot hold is written as its str()."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
                .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line |= {k: v for k, v in _fields(record).items() if k not in line}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


FORMATTERS = {
    "text": lambda: logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"),
    "json": JsonFormatter,
}


def setup(level: str = "info", extra_secret_env_vars: tuple[str, ...] = (), log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[log_format]())
    handler.addFilter(RedactSecrets(secret_values(extra_secret_env_vars)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
