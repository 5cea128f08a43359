"""`shipper dashboards validate | import | export`: the SLS content as code (shipper.dashboards)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from shipper.cli import CONFIG_OPTION, load_config
from shipper.config_files import DASHBOARDS


@click.group()
def dashboards() -> None:
    """SLS content as code: logstore indexes, the lifecycle dashboard, saved searches and alerts.

    \b
      shipper dashboards validate                      offline: shapes, queries, fields, local runs
      shipper dashboards import --project P --dry-run  print the plan, change nothing
      shipper dashboards import --project P            create what is missing, update what differs
      shipper dashboards export --project P --out DIR  write what the project holds, same layout

    import and export reach SLS at --endpoint (default: the config's sls sink) with the
    ALIBABA_CLOUD_* credentials; alert webhooks take ${SHIPPER_HOST}, ${SHIPPER_WEBHOOK_TOKEN} and
    ${OPERATOR_WEBHOOK_URL} from the environment (see dashboards/README.md).
    """


DIR_OPTION = click.option("--dir", "root", default=DASHBOARDS, type=click.Path(file_okay=False, path_type=Path),
                          help="The content folder (default: the content installed with shipper).")
ENDPOINT_OPTION = click.option("--endpoint", metavar="HOST", help="SLS endpoint (default: the config's sls sink).")


@dashboards.command("validate")
@DIR_OPTION
def dashboards_validate(root: Path) -> None:
    """Check every file offline: one `file: reason` line per problem, exit 1 if any."""
    from shipper.dashboards import validate

    if not root.is_dir():
        raise click.ClickException(f"{root}: no such folder (pass --dir)")
    problems = validate(root)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        raise click.ClickException(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {root}")
    click.echo(f"{root}: valid", err=True)


def _sls_content(config_path: str | None, endpoint: str | None):
    from shipper.cloud.credentials import credentials_for
    from shipper.cloud.sls import SlsContent, make_client

    if not endpoint:
        config = load_config(config_path)
        sls = config.sink("sls")
        if sls is None:
            raise click.BadParameter(f"give --endpoint, or add an sls sink to {config.path}", param_hint="--endpoint")
        endpoint = sls.endpoint
    return SlsContent(make_client(endpoint, credentials_for("sls", click.ClickException)))


@dashboards.command("import")
@click.option("--project", required=True, help="The SLS project to write into.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@DIR_OPTION
@ENDPOINT_OPTION
@CONFIG_OPTION
def dashboards_import(project, dry_run, root, endpoint, config_path) -> None:
    """Create missing logstores and indexes; create or update dashboards, saved searches and alerts.

    Idempotent: a second run plans only `unchanged` steps. The plan is printed either way. A dry run
    shows a placeholder that is not set as ${NAME} and lists the variables a real import needs.
    """
    from shipper.cloud import CloudError
    from shipper.cloud.sls import error_code
    from shipper.dashboards import DashboardsError, apply, plan_import
    from shipper.dashboards.apply import placeholder_names

    sls = _sls_content(config_path, endpoint)
    try:
        needed = placeholder_names(root)
        unset = [name for name in needed if name not in os.environ]
        # a dry run plans an unset placeholder as itself: nothing is sent
        fill = {name: f"${{{name}}}" for name in unset} if dry_run else {}
        steps = plan_import(sls, project, root, placeholders={**os.environ, **fill})
        for step in steps:
            click.echo(str(step))
        if not dry_run:
            apply(sls, project, steps)
    except DashboardsError as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:
        detail = e.message if isinstance(e, CloudError) else ""
        raise click.ClickException(f"sls: {project}: {error_code(e)} {detail}".rstrip()) from None
    changes = sum(1 for step in steps if step.action != "unchanged")
    click.echo(f"{'would change' if dry_run else 'changed'} {changes} of {len(steps)}", err=True)
    if dry_run and needed:
        note = f" (not set now: {', '.join(unset)}; planned as the placeholders themselves)" if unset else ""
        click.echo(f"a real import needs {', '.join(needed)} set{note}", err=True)


@dashboards.command("export")
@click.option("--project", required=True, help="The SLS project to read.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@ENDPOINT_OPTION
@CONFIG_OPTION
def dashboards_export(project, out, endpoint, config_path) -> None:
    """Write the project's indexes, dashboards, saved searches and alerts as files (validate can read them)."""
    from shipper.cloud.sls import error_code
    from shipper.dashboards import export

    try:
        written = export(_sls_content(config_path, endpoint), project, out)
    except click.ClickException:
        raise
    except Exception as e:
        raise click.ClickException(f"sls: {project}: {error_code(e)}") from None
    click.echo(f"wrote {len(written)} files to {out}", err=True)
