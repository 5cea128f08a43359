"""Export: write what an SLS project holds as files, in the layout load() and validate() read."""
from __future__ import annotations

import json
import re
from pathlib import Path

from shipper.cloud.sls import SlsContent
from shipper.dashboards.load import DashboardsError

_VOLATILE = ("createTime", "lastModifyTime", "lastModifiedTime")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _clean(body: dict, *drop: str) -> dict:
    return {k: v for k, v in body.items() if k not in _VOLATILE + drop}


def _write(out: Path, directory: str, name: str, body: dict) -> Path:
    if not _SAFE_NAME.fullmatch(name):
        raise DashboardsError(f"cannot export {name!r} as a file name")
    path = out / directory / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def export(sls: SlsContent, project: str, out: Path) -> list[Path]:
    """Write the project's indexed logstores, dashboards, saved searches and alerts under out, in the layout
    validate() and plan_import() read; returns the files written (existing files of other names are left).
    Logstores without an index are skipped, and so is anything deleted between the listing and its read;
    alert resources are account-level and never exported. `sls` may also be a client from make_client; a
    failed read raises CloudError.
    """
    sls, out = SlsContent.of(sls), Path(out)
    written = []
    for name in sls.names("logstore", project):
        index = sls.index(project, name)
        logstore = sls.logstore(project, name) if index is not None else None
        if logstore is not None:
            written.append(_write(out, "index", name, {"logstore": _clean(logstore), "index": _clean(index, "ttl")}))
    for kind, directory in (("savedsearch", "savedsearches"), ("dashboard", "dashboards"), ("alert", "alerts")):
        for name in sls.names(kind, project):
            body = sls.entity(kind, project, name)
            if body is not None:
                written.append(_write(out, directory, name, _clean(body)))
    return written
