"""Is the trail complete? The inventory (what DescribeInstances lists) against the trail (the events and API
calls stored in ecs-events), findings into the `shipper-audit` store.

- reconcile.py: the comparison, pure: a snapshot, the trail's facts per instance and the open findings in,
  finding records out;
- report.py: the trail's facts and the findings read from a store (SQLite or SLS, one query text for both),
  the completeness report of `shipper audit`, and the runner's after-sync step;
- backfill.py: `shipper backfill`, ActionTrail history and the inventory into a fresh installation.
"""
