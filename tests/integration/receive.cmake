# receive tests: leafmaild driven over SMTP by smtplib, swaks, curl and raw sockets
# (test_receive.py), and leafmaild as a process: signals, configuration and start-up errors,
# privileges, spool failures, memory, kill -9 (test_receive_daemon.py).
add_integration_test(receive test_receive.py receive)
add_integration_test(receive-daemon test_receive_daemon.py receive)
