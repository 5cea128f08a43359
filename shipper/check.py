"""`shipper check`: validate the config and reach every configured service, one line per finding."""
from __future__ import annotations

from shipper import registry
from shipper.config import Config
from shipper.registry import Finding


def check(config: Config) -> list[Finding]:
    findings = [Finding("ok", f"config {config.path}: valid")]
    for source in config.sources:
        findings += _component_findings(source, config)
    if config.enabled_hooks():
        findings.append(_check_openapi(config))
    for sink in config.sinks:
        findings += _component_findings(sink, config)
    return findings


def _component_findings(settings, config: Config) -> list[Finding]:
    component = registry.for_settings(settings)
    return component.check(settings, config) if component.check else []


def _check_openapi(config: Config) -> Finding:
    from shipper.cloud import CloudError, MissingCredentials, credentials_for
    from shipper.cloud.openapi import OpenApi

    try:
        credentials = credentials_for("hooks")
        count = OpenApi(config.openapi, credentials).count_instances()
    except MissingCredentials as e:
        return Finding("FAIL", str(e))
    except CloudError as e:
        return Finding("FAIL", f"hooks: ECS in {config.openapi.region} refused DescribeInstances for access key "
                               f"{credentials.access_key_id} ({e.code}); check [openapi] and the key's ECS permissions")
    modes = ", ".join(f"{name} {'dry-run' if hook.dry_run else 'LIVE'}"
                      for name, hook in config.hooks.items() if hook.enabled)
    return Finding("ok", f"hooks ({modes}): ECS in {config.openapi.region} reachable as "
                         f"{credentials.access_key_id} ({count} instances)")


def required_permissions(config: Config) -> list[str]:
    """The RAM actions the configured sources, sinks and enabled hooks call, sorted, each once."""
    configured = [*config.sources, *config.sinks, *config.enabled_hooks()]
    return sorted({action for settings in configured for action in registry.for_settings(settings).permissions})
