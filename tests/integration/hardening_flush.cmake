# Hardening of the sending side (issue 6): leafmail-flush under kill -9, a scripted smarthost
# that splits, garbles, stalls and resets at every step, SMTP smuggling end to end, secrets.
# About two to three minutes; every wait in it is bounded.
add_integration_test(hardening_flush test_hardening_flush.py flush hardening)
