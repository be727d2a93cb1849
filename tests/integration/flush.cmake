# leafmail-flush against a real smarthost (aiosmtpd with TLS and AUTH, and leafmaild itself).
add_integration_test(flush test_flush.py flush)
# Routes and identities: per-sender smarthosts, password/token commands, XOAUTH2, --check.
add_integration_test(routes test_routes.py flush)
# Local mail that reaches a person: aliases, admin-address, newaliases, rewrite-from.
add_integration_test(aliases test_aliases.py flush)
# Delivery that tells the truth (issue 11): the final dot, 452 splitting, QUIT and close_notify.
add_integration_test(flush_delivery test_flush_delivery.py flush)
# The spool-wide status (issue 11): the last flush per route, the attempt on each entry after a
# failure before MAIL, leafmail-list --status [--json], hostile status files.
add_integration_test(status test_status.py flush)
# A full disk never makes a flush send a delivered recipient another copy (issue 11): a tmpfs
# filled to the last block (needs root for the mount; fails under CI=true without it).
add_integration_test(flush_full_disk test_flush_full_disk.py flush)
