"""Print the closing lines of `make test`: each failed test with the first line of its
message, then 'N passed, N failed, N skipped' over every pytest run.

Each pytest run writes a JUnit XML report under .build/junit/; this adds them up so
the end of the test command (all CI shows of a long log) says what ran and what failed.
"""
from __future__ import annotations

import glob
import os
import sys
from xml.etree import ElementTree


def totals(paths):
    passed = failed = skipped = 0
    for path in paths:
        for suite in ElementTree.parse(path).getroot().iter("testsuite"):
            tests = int(suite.get("tests", 0))
            bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skip = int(suite.get("skipped", 0))
            failed += bad
            skipped += skip
            passed += tests - bad - skip
    return passed, failed, skipped


def failures(paths):
    """(report, test id, first line of the message) for every failed or erroring test."""
    found = []
    for path in paths:
        report = os.path.splitext(os.path.basename(path))[0]
        for case in ElementTree.parse(path).getroot().iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                message = (bad.get("message") or bad.text or "").strip().splitlines() or [""]
                test = "%s::%s" % (case.get("classname", ""), case.get("name", ""))
                found.append((report, test, message[0][:300]))
    return found


def main(directory):
    paths = sorted(glob.glob(os.path.join(directory, "*.xml")))
    if not paths:
        print("no test reports in %s" % directory)
        return 1
    for report, test, message in failures(paths):
        print("FAILED [%s] %s: %s" % (report, test, message))
    passed, failed, skipped = totals(paths)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".build/junit"))
