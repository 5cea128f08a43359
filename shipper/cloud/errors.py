"""CloudError: what every cloud call raises, whichever service and SDK made it.

Each client module (shipper.cloud.mns, .sls, .openapi) turns its SDK's exceptions into a CloudError where
the call is made, so no caller sees an SDK exception type or reads a code out of one. The client answers
the two questions a caller has, from the service's documented codes:
- `retryable`: the same call may succeed later (throttling, busy, 5xx, no answer at all);
- `fatal`: the process cannot go on with this configuration (queue or project missing, access key
  refused, clock off): nothing succeeds until someone changes the config, the key or the machine.
Neither means the service refused this request (its data, the resource's state): the caller decides.

str() is "<code>: <message> (RequestId <id>)". A message can quote what the SDK sent (a string to sign, a
signed URL): the clients pass it through `redact` first, so it never holds the secret or the STS token.
"""
from __future__ import annotations

from typing import Iterable
from urllib.parse import quote

MASK = "***"


class CloudError(Exception):
    """A failed call to `service` (mns, sls, ecs, slb, alb, nlb…), with the service's own error `code`."""

    def __init__(self, service: str, code: str, message: str, *, retryable: bool, fatal: bool,
                 request_id: str = "", http_status: int | None = None):
        super().__init__(f"{code}: {message}" + (f" (RequestId {request_id})" if request_id else ""))
        self.service = service
        self.code = code
        self.message = message
        self.retryable = retryable
        self.fatal = fatal
        self.request_id = request_id
        self.http_status = http_status  # None when no HTTP error answer came back (network, client side)


class NotFound(CloudError):
    """What the call names is not there (any more): an instance, a load-balancer member or group, a queue
    message or its receipt handle. An answer, never fatal; a missing queue, project or logstore is a
    configuration error instead (a fatal CloudError)."""

    def __init__(self, service: str, code: str, message: str, *, retryable: bool = False,
                 request_id: str = "", http_status: int | None = None):
        super().__init__(service, code, message, retryable=retryable, fatal=False, request_id=request_id,
                         http_status=http_status)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` without the secrets: raw or percent-encoded once or twice, as SDKs echo what they signed."""
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe=""), quote(quote(secret, safe=""), safe="")}:
                text = text.replace(form, MASK)
    return text
