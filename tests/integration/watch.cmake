# leafmail-flush --watch: new mail at once, backoff, --kick, beside a one-shot flush, SIGTERM,
# and link events in a network namespace the test makes (root; fails under CI=true without).
add_integration_test(watch test_watch.py watch)
