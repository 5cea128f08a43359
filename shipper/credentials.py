"""Alibaba Cloud credentials, only ever from the ALIBABA_CLOUD_* environment variables.

The secret and the STS token are never part of a repr, a log line or an error message.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


class MissingCredentials(Exception):
    """The variables are not set; the message says which."""


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
