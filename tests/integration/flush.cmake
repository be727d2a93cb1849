# leafmail-flush against a real smarthost (aiosmtpd with TLS and AUTH, and leafmaild itself).
add_integration_test(flush test_flush.py flush)
