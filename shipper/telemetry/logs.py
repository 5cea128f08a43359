"""Logging to stderr, one line per record, with every known secret masked.

shipper never formats a secret into a message; masking the values of the credential variables in every
record (arguments and tracebacks included) is the second wall, for text that comes from libraries.
"""
from __future__ import annotations

import logging
import os
import sys

SECRET_ENV_VARS = ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN")
MASK = "***"


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
        return True


def setup(level: str = "info", extra_secret_env_vars: tuple[str, ...] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(RedactSecrets(secret_values(extra_secret_env_vars)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
