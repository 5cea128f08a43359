"""SLS content as code: `dashboards/` checked offline, imported idempotently, exported back.

Layout (dashboards/README.md), every file named after the entity it holds:

    index/<logstore>.json            {"logstore": CreateLogStore body, "index": CreateIndex body}
    dashboards/<dashboardName>.json  savedsearches/<savedsearchName>.json  alerts/<name>.json (Alert 2.0)
    alerts/resources/<resource name>/<record id>.json   {"id", "tag", "value"}: account-level alert
                                     resources (webhooks, content templates, action policies)

Modules, one job each: load (the files' shapes, read into entities), rules (what SLS refuses, with sources),
template (the content template renderer), validate (offline checks plus a throw-away SQLite store), apply
(plan_import() only reads SLS, apply() writes it), export (writes what a project holds in the same layout,
resource records excepted: they are account-level and a webhook URL carries the hook token).
"""
from shipper.dashboards.apply import Step, apply, plan_import, substitute_placeholders
from shipper.dashboards.export import export
from shipper.dashboards.load import ACTION_POLICY, CONTENT_TEMPLATE, WEBHOOK, DashboardsError, Problem
from shipper.dashboards.template import TemplateError, render, render_template
from shipper.dashboards.validate import HOOK_PAYLOAD_KEYS, validate

__all__ = [
    "ACTION_POLICY", "CONTENT_TEMPLATE", "HOOK_PAYLOAD_KEYS", "WEBHOOK", "DashboardsError", "Problem", "Step",
    "TemplateError", "apply", "export", "plan_import", "render", "render_template", "substitute_placeholders",
    "validate",
]
