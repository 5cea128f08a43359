"""Alibaba Cloud credentials, only ever from the ALIBABA_CLOUD_* environment variables.

The secret and the STS token are never part of a repr, a log line or an error message.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from shipper.cloud.errors import CloudError

__all__ = ["Credentials", "MissingCredentials", "credentials_for"]


class MissingCredentials(CloudError):
    """The variables are not set; the message says which (str() is that message alone)."""

    def __init__(self, message: str):
        super().__init__("credentials", "MissingCredentials", message, retryable=False, fatal=True)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str
    security_token: str = ""

    def __repr__(self) -> str:  # never print the secret, even by accident
        return f"Credentials(access_key_id={self.access_key_id!r})"

    @classmethod
    def from_env(cls, environ=os.environ) -> "Credentials":
        key_id = environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
        secret = environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")
        if not key_id or not secret:
            raise MissingCredentials("set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET "
                                     "(and ALIBABA_CLOUD_SECURITY_TOKEN for STS) in the environment")
        return cls(key_id, secret, environ.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""))


def credentials_for(what: str, error: Callable[[str], Exception] = MissingCredentials,
                    environ=os.environ) -> Credentials:
    """The credentials `what` (a component: "sls sink", "hooks"…) runs with, or `error` raised with one line,
    "<what>: set ALIBABA_CLOUD_ACCESS_KEY_ID and …", and no chained traceback. `error` is the exception
    type its caller already reports (StoreError, SourceError, HooksError); MissingCredentials by default."""
    try:
        return Credentials.from_env(environ)
    except MissingCredentials as e:
        raise error(f"{what}: {e}") from None
