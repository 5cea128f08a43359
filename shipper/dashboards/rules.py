"""What real SLS refuses (or mis-renders) in shipper's content, and where each rule comes from.

dashboards/README.md ("What validate checks") lists the same sources. The SLS emulator (tests/emulators/sls.py)
enforces these rules with its own code so that an import test catches content SLS would refuse; only the
values below are repeated there.
"""
from __future__ import annotations

import json
import re

from shipper import events
from shipper.query.parser import SQL_KEYWORDS, QueryError, SqlTok, significant, sql_tokens

# A chart's `title` is its id: both SDKs put it in the URL /dashboards/{dashboard}/charts/{title}
# (aliyun-log-go-sdk client_dashboard.go, aliyun-log-java-sdk CreateChartRequest), and the documented chart
# naming rule is this pattern. The human title goes in display.displayName.
CHART_ID = re.compile(r"[0-9a-z][0-9a-z_-]{0,98}[0-9a-z]")
# dashboardName is an id in the URL /dashboards/{dashboardName} too; the same pattern is assumed (inferred:
# the CreateDashboard page names no pattern, console-made dashboards have ids of this form).
DASHBOARD_NAME = CHART_ID
# savedsearchName: 3 to 63 characters (reference/sls.md §9); the character set is SLS's naming rule for
# project-level names (lower-case letters, digits, `-`, `_`, starting and ending with a letter or digit).
SAVEDSEARCH_NAME = re.compile(r"[0-9a-z][0-9a-z_-]{1,61}[0-9a-z]")

# SQL functions SLS documents (Alibaba Cloud "SQL functions" overview: aggregate, string, date and time,
# mathematical, conditional, type conversion, JSON, regular expression, URL and window functions). Only
# what is listed here passes validate: add a function after checking its page.
SQL_FUNCTIONS = frozenset("""
    arbitrary avg bitwise_and_agg bitwise_or_agg bool_and bool_or checksum count count_if every
    geometric_mean max max_by min min_by sum approx_distinct approx_percentile histogram map_agg
    array_agg stddev stddev_samp stddev_pop variance var_samp var_pop
    chr codepoint concat from_utf8 length levenshtein_distance lower lpad ltrim normalize position replace
    reverse rpad rtrim split split_part split_to_map strpos substr to_utf8 trim upper
    current_date current_time current_timestamp current_timezone date date_add date_diff date_format
    date_parse date_trunc day day_of_month day_of_week day_of_year extract from_iso8601_date
    from_iso8601_timestamp from_unixtime hour minute month now quarter second time_series to_iso8601
    to_unixtime week year
    abs cbrt ceil ceiling cos degrees exp floor ln log10 log2 mod pi pow power radians rand random round
    sign sin sqrt tan truncate greatest least
    coalesce if nullif try cast try_cast typeof
    json_array_contains json_array_get json_array_length json_extract json_extract_scalar json_format
    json_parse json_size
    regexp_extract regexp_extract_all regexp_like regexp_replace regexp_split
    url_extract_fragment url_extract_host url_extract_parameter url_extract_path url_extract_port
    url_extract_protocol url_extract_query url_encode url_decode
    rank dense_rank row_number percent_rank cume_dist ntile lag lead first_value last_value nth_value
""".split())
# `a || b` is Presto's concatenation but is not in SLS's documented operators; concat(a, b) is.
CONCAT_OPERATOR = "||"

# Action policy DSL (Alibaba Cloud "Syntax of action policies"; SLS's own console export): a webhook record of
# sls.alert.action_webhook is fired with type="webhook_integration". type="webhook" is the legacy form that
# carries its URL inline; it does not take a webhook_id.
FIRE_FORMS = {"webhook_integration": ("integration_type", "webhook_id", "template_id", "period")}
INTEGRATION_TYPES = ("custom", "dingtalk", "wechat", "lark", "slack")
FIRE_PERIODS = ("any", "workday", "non_workday", "worktime", "non_worktime")
# An action policy record's value as aliyun-log-go-sdk's ResourceActionPolicy struct always sends it: the
# secondary script and the six escalation fields included. An empty primary or secondary script is refused
# with ActionPolicyEmpty (SLS error codes).
ACTION_POLICY_FIELDS = {
    "action_policy_id": str, "action_policy_name": str, "is_default": bool, "labels": dict,
    "primary_policy_script": str, "secondary_policy_script": str,
    "escalation_start_enabled": bool, "escalation_start_timeout": str,
    "escalation_inprogress_enabled": bool, "escalation_inprogress_timeout": str,
    "escalation_enabled": bool, "escalation_timeout": str,
}
POLICY_SCRIPTS = ("primary_policy_script", "secondary_policy_script")

# Content template variables and their types (Alibaba Cloud "Variables in new alert templates"). Lists and
# maps must be rendered with `| to_json` (the "Alert notification content FAQ" form); strings written into a
# JSON body need `| quote`, which escapes them and adds the quotes (SLS's default custom-webhook template).
ALERT_VARIABLES = {
    "aliuid": str, "alert_instance_id": str, "alert_id": str, "alert_name": str, "alert_type": str,
    "region": str, "project": str, "next_eval_interval": int, "alert_time": int, "fire_time": int,
    "resolve_time": int, "status": str, "severity": int, "labels": dict, "annotations": dict, "results": list,
    "fire_results": list, "fire_results_count": int, "fingerprint": str, "dashboard_url": str,
    "query_url": str, "signin_url": str, "condition": str, "raw_condition": str, "policy": dict,
}
# Filters SLS documents for templates ("Built-in functions in alert templates"); shipper's renderer
# (template.py) implements to_json, quote and default, the ones its content uses.
TEMPLATE_FILTERS = frozenset("""
    to_json quote default format_date format_status format_severity to_list annotations_to_list
    escape_markdown escape_html length string int float abs round upper lower base64_encode base64_decode
    md5 url_encode url_decode
""".split())
SERIALIZING_FILTERS = ("to_json", "quote")


class DslError(ValueError):
    pass


_FIRE_ARGUMENT = re.compile(r'\s*([a-z_]+)\s*=\s*("(?:[^"\\]|\\.)*"|\[[^\]]*\]|\{[^}]*\}|[^,)]+)\s*(,|\))')


def fire_calls(script: str) -> list[tuple[int, dict]]:
    """The fire(...) statements of an action policy script: (line number, arguments), the values decoded as
    JSON where they are JSON (strings, lists, maps). DslError on anything else in the script."""
    calls = []
    for number, line in enumerate(script.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not line.startswith("fire(") or not line.endswith(")"):
            raise DslError(f"line {number} is not a fire(...) statement")
        arguments, at = {}, len("fire(")
        while at < len(line):
            match = _FIRE_ARGUMENT.match(line, at)
            if match is None:
                raise DslError(f"line {number}: cannot read the arguments from column {at + 1}")
            name, raw = match.group(1), match.group(2).strip()
            try:
                arguments[name] = json.loads(raw)
            except ValueError:
                arguments[name] = raw
            at = match.end()
            if match.group(3) == ")":
                break
        if at != len(line):
            raise DslError(f"line {number}: text after fire(...)")
        calls.append((number, arguments))
    return calls


def fire_reasons(call: dict) -> list[str]:
    """What SLS refuses in one fire(...) call."""
    kind = call.get("type")
    if kind == "webhook":
        return ['fire(type="webhook") is the legacy inline-URL form: fire a sls.alert.action_webhook record with '
                'type="webhook_integration", integration_type="custom", webhook_id, template_id, period']
    if kind not in FIRE_FORMS:
        return [f"fire(type={json.dumps(kind)}) is not a form shipper checks; "
                f"known: {', '.join(f'type={json.dumps(k)}' for k in FIRE_FORMS)}"]
    reasons = [f'fire(type="{kind}") needs {name}=' for name in FIRE_FORMS[kind] if name not in call]
    if "integration_type" in call and call["integration_type"] not in INTEGRATION_TYPES:
        reasons.append(f"integration_type must be one of {', '.join(INTEGRATION_TYPES)}")
    if "period" in call and call["period"] not in FIRE_PERIODS:
        reasons.append(f"period must be one of {', '.join(FIRE_PERIODS)}")
    return reasons


def sql_reasons(sql: str) -> list[str]:
    """What SLS does not document in the SQL part of a query: `||`, and functions outside SQL_FUNCTIONS."""
    try:
        tokens = significant(sql_tokens(sql))
    except QueryError:
        return []  # the query's own parse reports it
    reasons = []
    if any(tok.kind == "punct" and tok.text == CONCAT_OPERATOR for tok in tokens):
        reasons.append("`||` is not an SLS SQL operator: use concat(a, b)")
    called = sorted({tok.text.lower() for tok, following in zip(tokens, tokens[1:])
                     if tok.kind == "ident" and following.text == "(" and tok.text.lower() not in SQL_KEYWORDS})
    reasons += [f"{name}() is not a documented SLS SQL function" for name in called if name not in SQL_FUNCTIONS]
    return reasons


# An instance's last state is max_by(state, LAST_STATE_KEY) everywhere: SLS's max_by picks any row of a tie in
# event time, so the key breaks ties by the lifecycle rank (events.STATE_ORDER; Pending and a row with no state
# rank 0), the order `shipper lifecycle` follows too. Ranks stay under 10, so a later
# millisecond always wins. event_time_ms is indexed as long (bigint): times 10 stays far below 2^63.
STATE_RANK = "case {} else 0 end".format(
    " ".join(f"when state = '{state}' then {rank}" for state, rank in events.STATE_ORDER.items() if rank))
LAST_STATE_KEY = f"event_time_ms * 10 + {STATE_RANK}"


def _arguments(tokens: list[SqlTok], open_at: int) -> list[list[SqlTok]]:
    """The comma-separated arguments of the call whose '(' is tokens[open_at]."""
    arguments, current, depth = [], [], 0
    for tok in tokens[open_at + 1:]:
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            if depth == 0:
                break
            depth -= 1
        elif tok.text == "," and depth == 0:
            arguments.append(current)
            current = []
            continue
        current.append(tok)
    return arguments + [current]


def _canonical(tokens: list[SqlTok]) -> list[str]:
    """Token texts compared the way SQL reads them: keywords and names case-insensitive, strings exact."""
    return [tok.text if tok.kind == "string" else tok.text.lower() for tok in tokens]


def last_state_reasons(sql: str) -> list[str]:
    """A max_by(state, key) whose key is not LAST_STATE_KEY: its ties would fall either way in SLS."""
    try:
        tokens = significant(sql_tokens(sql))
    except QueryError:
        return []  # the query's own parse reports it
    expected = _canonical(significant(sql_tokens(LAST_STATE_KEY)))
    reasons = []
    for at, tok in enumerate(tokens[:-1]):
        if tok.kind != "ident" or tok.text.lower() != "max_by" or tokens[at + 1].text != "(":
            continue
        arguments = _arguments(tokens, at + 1)
        if _canonical(arguments[0]) == ["state"] and (len(arguments) != 2 or _canonical(arguments[1]) != expected):
            reasons.append(f"max_by(state, …) must break ties in event time by the lifecycle rank: "
                           f"use max_by(state, {LAST_STATE_KEY})")
    return reasons


# `date_trunc('hour', __time__) AS x`: with unix time in, SLS gives unix seconds out, so a chart axis of x shows
# numbers. date_trunc over from_unixtime(__time__) (a timestamp) keeps a timestamp.
_EPOCH_TRUNC = re.compile(r"date_trunc\s*\(\s*'\w+'\s*,\s*__time__\s*\)\s+as\s+(\w+)", re.IGNORECASE)


def epoch_axis_reasons(query: str, x_axis: list) -> list[str]:
    """A chart whose x axis is a bare date_trunc(unit, __time__), i.e. unix seconds."""
    return [f"display.xAxis {name!r} is date_trunc(unit, __time__), which SLS gives as unix seconds: use "
            f"date_format(date_trunc(unit, from_unixtime(__time__)), '%Y-%m-%d %H:%i')"
            for name in _EPOCH_TRUNC.findall(query) if name in x_axis]
