"""The one boundary between shipper and Alibaba Cloud: nothing outside this package imports a cloud SDK.

One client module per service, each built on its pinned SDK and mapping every SDK exception to
`CloudError` where the call is made:
- `shipper.cloud.mns`: MNS queues (aliyun-mns-sdk 1.3.0), for the MNS source;
- `shipper.cloud.sls`: SLS (aliyun-log-python-sdk 0.9.52), for the SLS sink, search and dashboards;
- `shipper.cloud.openapi`: the ECS / CLB / ALB / NLB RPC OpenAPI (aliyun-python-sdk-core), for the hooks.
An ActionTrail client (LookupEvents, reference/actiontrail.md) would be one more module here, built like
`openapi` on the same RPC signing, raising CloudError.

This package itself imports no SDK: credentials, the error type and the backoff are shared by all three,
and importing them costs nothing. Import a service module only where that service is used.
"""
from shipper.cloud.backoff import Backoff
from shipper.cloud.credentials import Credentials, MissingCredentials, credentials_for
from shipper.cloud.errors import CloudError, NotFound, redact

__all__ = ["Backoff", "CloudError", "Credentials", "MissingCredentials", "NotFound", "credentials_for", "redact"]
