# README.md kept true (test_readme.py): the title and the two commands on top, the test
# command equal to .ci/run's, and the demo run as written in a fresh git clone.
add_integration_test(readme test_readme.py readme)
