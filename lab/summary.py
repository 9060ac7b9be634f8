"""Print one closing line for every pytest run of `make test`: 'N passed, N failed, N skipped'.

Each pytest run writes a JUnit XML report under .build/junit/; this adds them up so
the end of the test command says, in one line, what ran across all suites.
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


def main(directory):
    paths = sorted(glob.glob(os.path.join(directory, "*.xml")))
    if not paths:
        print("no test reports in %s" % directory)
        return 1
    passed, failed, skipped = totals(paths)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".build/junit"))
