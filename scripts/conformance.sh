#!/usr/bin/env bash
# The ETSI NGSI-LD conformance ratchet: runs groups of the suite with
# ../shared/conformance/run-etsi.sh and compares the cases that passed with the checked-in
# list tests/conformance/expected-pass.txt (one case a line: its .robot file under
# TP/NGSI-LD, "::", the test name).
#
#   bash scripts/conformance.sh [--write] [GROUP ...]
#
# GROUP is a path under TP/NGSI-LD (default: the Consumption, Provision and Subscription
# groups). Fails when a listed case of the groups run did not pass (a case that passed may
# never fail again); prints the new passes, and with --write adds them to the list.
# OUT (default $TMPDIR/cityos-conformance) keeps the reports; PORT as for run-etsi.sh.
# Without the suite (no ../shared/conformance) it says so and exits 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
write=0
if [ "${1:-}" = "--write" ]; then write=1; shift; fi
runner=../shared/conformance/run-etsi.sh
if [ ! -f "$runner" ]; then
    echo "conformance: no $runner (the ETSI suite is not on this machine); skipped"
    exit 0
fi
[ $# -gt 0 ] || set -- ContextInformation/Consumption ContextInformation/Provision \
    ContextInformation/Subscription
export OUT=${OUT:-${TMPDIR:-/tmp}/cityos-conformance}
bash "$runner" "$@"
exec .venv/bin/python - "$OUT/output.xml" tests/conformance/expected-pass.txt "$write" "$@" <<'PY'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

output, listing, write, groups = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
passed, ran = set(), set()


def walk(suite, source=""):
    source = suite.get("source", source)
    for test in suite.findall("test"):
        case = f"{source.split('TP/NGSI-LD/')[-1]}::{test.get('name')}"
        ran.add(case)
        if test.find("status").get("status") == "PASS":
            passed.add(case)
    for child in suite.findall("suite"):
        walk(child, source)


if not Path(output).is_file():
    sys.exit(f"conformance: {output} was not written (see the runner's output above)")
walk(ET.parse(output).getroot().find("suite"))
lines = listing.read_text().splitlines() if listing.exists() else []
expected = {line for line in lines if line and not line.startswith("#")}
in_groups = {c for c in expected
             if any(c.startswith((g.rstrip("/") + "/", g.rstrip("/") + "::")) for g in groups)}
regressed = sorted(in_groups - passed)
new = sorted(passed - expected)
print(f"conformance: {len(passed)} of {len(ran)} cases passed; {len(in_groups)} listed for "
      f"these groups; {len(regressed)} listed case(s) failed; {len(new)} new pass(es)")
for case in new:
    print(f"  new pass: {case}")
for case in regressed:
    print(f"  REGRESSION: {case}")
if write and new:
    header = [line for line in lines if line.startswith("#")] or [
        "# ETSI NGSI-LD conformance cases that pass (scripts/conformance.sh, docs/conformance.md):",
        "# <robot file under TP/NGSI-LD>::<test name>; a listed case may never fail again"]
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("\n".join(header + sorted(expected | passed)) + "\n")
    print(f"conformance: {len(new)} case(s) added to {listing}")
sys.exit(1 if regressed else 0)
PY
