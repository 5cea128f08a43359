#!/usr/bin/env bash
# Every benchmark, side by side in one invocation, then bench/RESULTS.md from their results.
# About 30 minutes on the project's 2-core machine; run it on a quiet machine (nothing else busy).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
"$py" -m bench.mns_scenarios --repeat 3
"$py" bench/lb_drain_latency.py --burst --runs 3
"$py" -m bench.http_push --repeat 3
"$py" -m bench.http_server --repeat 3
"$py" -m bench.report >/dev/null
echo "bench/RESULTS.md written"
