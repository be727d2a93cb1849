"""Prints the totals of the integration test methods recorded by run_module.py, for the end of
the CI log: the skipped methods with their reasons, one line per results directory (a build
of the suite), and last the line 'N passed, N failed, N skipped' over all of them.
Usage: summarize_results.py RESULTS_DIR... (a directory that does not exist is left out: that
suite did not run). Exits 1 when a method failed."""

import json
import os
import sys


def read_records(results_dir):
    records = []
    for name in sorted(os.listdir(results_dir)):
        if name.endswith(".json"):
            with open(os.path.join(results_dir, name)) as f:
                records.append(json.load(f))
    return records


def totals(records):
    return {key: sum(r[key] for r in records) for key in ("ran", "passed", "failed", "skipped")}


def main():
    if len(sys.argv) < 2:
        print("usage: summarize_results.py RESULTS_DIR...", file=sys.stderr)
        return 64
    everything = []
    for results_dir in sys.argv[1:]:
        if not os.path.isdir(results_dir):
            continue
        records = read_records(results_dir)
        for r in records:
            for test_id, reason in r["skipped_tests"]:
                print("skipped: %s: %s" % (test_id, reason))
        t = totals(records)
        print("%s: %d modules, %d test methods ran, %d passed, %d failed, %d skipped" %
              (results_dir, len(records), t["ran"], t["passed"], t["failed"], t["skipped"]))
        everything += records
    t = totals(everything)
    print("integration test methods: %d ran" % t["ran"])
    print("%d passed, %d failed, %d skipped" % (t["passed"], t["failed"], t["skipped"]))
    return 1 if t["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
