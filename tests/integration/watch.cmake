# leafmail-flush --watch: new mail at once, backoff, --kick, beside a one-shot flush, SIGTERM,
# and link events in a network namespace the test makes (root; fails under CI=true without).
add_integration_test(watch test_watch.py watch)
# The 10,000-message memory run: a few minutes, so labelled on its own (ctest -L watch-memory).
add_integration_test(watch-memory test_watch_memory.py watch-memory)
