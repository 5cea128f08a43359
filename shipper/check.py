"""`shipper check`: validate the config and reach every configured service, one line per finding."""
from __future__ import annotations

import json

from shipper import registry
from shipper.config import Config
from shipper.registry import Finding


def check(config: Config) -> list[Finding]:
    findings = [Finding("ok", f"config {config.path}: valid")]
    for source in config.sources:
        findings += _component_findings(source, config)
    if _openapi_users(config):
        findings.append(_check_openapi(config))
    if config.actiontrail.enabled:
        findings.append(_check_actiontrail(config))
    for sink in config.sinks:
        findings += _component_findings(sink, config)
    return findings


def format_finding(finding: Finding, as_json: bool = False) -> str:
    """One line: `LEVEL text`, or with `as_json` the JSON object {"level", "text"} (check --json)."""
    if as_json:
        return json.dumps({"level": finding.level, "text": finding.text}, ensure_ascii=False)
    return f"{finding.level:<4} {finding.text}"


def _component_findings(settings, config: Config) -> list[Finding]:
    component = registry.for_settings(settings)
    return component.check(settings, config) if component.check else []


def _openapi_users(config: Config) -> str:
    """Who calls the OpenAPI, for the findings: "hooks (restart LIVE)", "inventory", both, or ""."""
    users = []
    if config.enabled_hooks():
        modes = ", ".join(f"{name} {'dry-run' if hook.dry_run else 'LIVE'}"
                          for name, hook in config.hooks.items() if hook.enabled)
        users.append(f"hooks ({modes})")
    if config.inventory.enabled:
        users.append("inventory")
    return " and ".join(users)


def _check_openapi(config: Config) -> Finding:
    """One signed DescribeInstances per region the hooks and the inventory read (for "all", DescribeRegions
    first)."""
    from shipper.cloud import CloudError, MissingCredentials, credentials_for
    from shipper.cloud.openapi import ALL_REGIONS, OpenApi

    users = _openapi_users(config)
    who = "hooks" if config.enabled_hooks() else "inventory"
    try:
        credentials = credentials_for(who)
    except MissingCredentials as e:
        return Finding("FAIL", str(e))
    api = OpenApi(config.openapi, credentials)
    key = credentials.access_key_id
    try:
        regions = api.regions()
    except CloudError as e:
        return Finding("FAIL", f"{who}: ECS refused DescribeRegions for access key {key} ({e.code}); "
                               "check the key's ecs:DescribeRegions permission, or list [openapi] regions")
    count = 0
    for region in regions:
        try:
            count += api.count_instances(region)
        except CloudError as e:
            if e.code == "InvalidRegionId.NotFound":
                return Finding("FAIL", f"{who}: [openapi] regions: {region!r} is not an ECS region; "
                                       'fix the name or use ["all"]')
            return Finding("FAIL", f"{who}: ECS in {region} refused DescribeInstances for access key {key} "
                                   f"({e.code}); check [openapi] and the key's ECS permissions")
    where = f"all {len(regions)} regions" if config.openapi.regions == (ALL_REGIONS,) else ", ".join(regions)
    return Finding("ok", f"{users}: ECS in {where} reachable as {key} ({count} instances)")


def _check_actiontrail(config: Config) -> Finding:
    """One LookupEvents per region over the last minute: the key may read the trail in every region."""
    import time

    from shipper.cloud import CloudError, MissingCredentials, credentials_for
    from shipper.cloud.actiontrail import ActionTrail
    from shipper.cloud.openapi import OpenApi

    try:
        credentials = credentials_for("actiontrail")
    except MissingCredentials as e:
        return Finding("FAIL", str(e))
    api = OpenApi(config.openapi, credentials)
    trail, now_ms = ActionTrail(api), int(time.time() * 1000)
    try:
        regions = api.regions()
        for region in regions:
            sum(1 for _ in trail.lookup_events(region, now_ms - 60_000, now_ms))
    except CloudError as e:
        return Finding("FAIL", f"actiontrail: LookupEvents refused for access key {credentials.access_key_id} "
                               f"({e.code}); check the key's actiontrail:LookupEvents permission and [openapi]")
    return Finding("ok", f"actiontrail: LookupEvents in {', '.join(regions)} readable as {credentials.access_key_id}")


INVENTORY_PERMISSIONS = ("ecs:DescribeInstances",)
ACTIONTRAIL_PERMISSIONS = ("actiontrail:LookupEvents",)
ALL_REGIONS_PERMISSION = "ecs:DescribeRegions"  # [openapi] regions = ["all"]: the list comes from ECS


def required_permissions(config: Config) -> list[str]:
    """The RAM actions the configured sources, sinks, enabled hooks, the inventory and the ActionTrail poller
    call, sorted, each once."""
    configured = [*config.sources, *config.sinks, *config.enabled_hooks()]
    actions = {action for settings in configured for action in registry.for_settings(settings).permissions}
    if config.inventory.enabled:
        actions.update(INVENTORY_PERMISSIONS)
    if config.actiontrail.enabled:
        actions.update(ACTIONTRAIL_PERMISSIONS)
    if (_openapi_users(config) or config.actiontrail.enabled) and config.openapi.regions == ("all",):
        actions.add(ALL_REGIONS_PERMISSION)
    return sorted(actions)
