"""Runs one integration test module as `python3 -m unittest -v MODULE` does, then records how
many test methods ran, passed, failed and were skipped (with the reasons) in
$LEAFMAIL_TEST_RESULTS/MODULE.json, for the summary that ends the CI log
(summarize_results.py). CTest sees one entry per module and calls it passed even when every
method in it skipped: this count is what tells."""

import json
import os
import sys
import unittest


def main():
    if len(sys.argv) != 2:
        print("usage: run_module.py test_module.py", file=sys.stderr)
        return 64
    name = os.path.basename(sys.argv[1])
    name = name[:-3] if name.endswith(".py") else name
    suite = unittest.defaultTestLoader.loadTestsFromName(name)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    counts = {"module": name, "ran": result.testsRun, "passed": result.testsRun - failed - skipped,
              "failed": failed, "skipped": skipped,
              "skipped_tests": [[test.id(), reason] for test, reason in result.skipped]}
    print("%s: %d ran, %d passed, %d failed, %d skipped" %
          (name, counts["ran"], counts["passed"], failed, skipped), file=sys.stderr)
    results_dir = os.environ.get("LEAFMAIL_TEST_RESULTS")
    if results_dir:
        os.makedirs(results_dir, exist_ok=True)
        with open(os.path.join(results_dir, name + ".json"), "w") as f:
            json.dump(counts, f)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
