#!/usr/bin/env python3
"""Reads meson's testlog.json files (one or more) and prints the closing
'N passed, N failed' line over all of them. A path that does not exist (a build that never got
to its tests) counts as one failure."""
import json, os, sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    if not os.path.exists(path):
        print(f"{path}: missing (its build failed)", file=sys.stderr)
        failed += 1
        continue
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            res = r.get("result")
            if res in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif res == "SKIP":
                skipped += 1
            else:
                failed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
