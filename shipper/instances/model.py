"""What a DescribeInstances answer says about one instance: a plain value the guards, the hooks and the
instance registry share, with no SDK behind it."""
from __future__ import annotations

from dataclasses import dataclass

SPOT_STRATEGIES = frozenset({"SpotAsPriceGo", "SpotWithPriceLimit"})


@dataclass(frozen=True)
class Instance:
    instance_id: str
    status: str
    tags: dict
    region_id: str = ""                 # where its OpenAPI calls go
    lock_reasons: tuple = ()            # OperationLocks LockReason values: financial, security, Recycling, …
    spot_strategy: str = "NoSpot"
    charge_type: str = ""               # PrePaid | PostPaid
    stopped_mode: str = ""              # KeepCharging | StopCharging | Not-applicable
    expired_time: str = ""              # minute precision, YYYY-MM-DDTHH:MMZ
    creation_time: str = ""             # minute precision, YYYY-MM-DDTHH:MMZ (the audit: older than the trail?)
    zone_id: str = ""
    instance_type: str = ""
    instance_name: str = ""
    private_ips: tuple = ()
    public_ips: tuple = ()

    @property
    def is_spot(self) -> bool:
        """Only the two spot strategies count: an unknown value is not taken for spot (NoSpot is on-demand)."""
        return self.spot_strategy in SPOT_STRATEGIES
