#!/bin/sh
# nightly-compare.sh BASELINE_DIR REPORT_DIR
#
# The nightly workflow's comparison (docs/soak.md, "Nightly: against the
# last good soak"): compare tonight's soak in REPORT_DIR with the last good
# one kept in BASELINE_DIR, and make tonight's report.json the baseline when
# nothing regressed. No baseline (the first night, or the cache lost it),
# or one that cannot be compared (exit 2 of bin/soak compare: unlike soaks,
# a damaged report), is said in the job summary and passes on the trend
# verdict alone. Exit 1 when something regressed; the baseline stays.
#
# SOAK_BIN is bin/soak unless set.
set -u
if [ $# -ne 2 ]; then
	echo "usage: nightly-compare.sh BASELINE_DIR REPORT_DIR" >&2
	exit 2
fi
base=$1
report=$2
soak=${SOAK_BIN:-bin/soak}
summary=${GITHUB_STEP_SUMMARY:-/dev/null}

if [ ! -f "$report/report.json" ]; then
	echo "nightly-compare.sh: REPORT_DIR: no report.json in $report" >&2
	exit 2
fi

keep() {
	rm -rf "$base" && mkdir -p "$base" && cp "$report/report.json" "$base/"
}

if [ ! -f "$base/report.json" ]; then
	echo "soak: no baseline in $base (first night, or the cache lost it): judged on the trend alone; tonight's report is the baseline from now on." | tee -a "$summary"
	keep
	exit $?
fi

rc=0
"$soak" compare "$base" "$report" || rc=$?
case $rc in
0)
	keep
	exit $?
	;;
2)
	echo "soak: could not compare with the baseline (above): judged on the trend alone; tonight's report is the baseline from now on." | tee -a "$summary"
	keep
	exit $?
	;;
esac
exit "$rc"
