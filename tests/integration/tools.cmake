# leafmail-sendmail fed by real programs and the setgid install model (test_tools_sendmail.py),
# leafmail-list and its management actions (test_tools_list.py), and make install, the man
# pages and contrib/ (test_tools_install.py).
add_integration_test(tools-sendmail test_tools_sendmail.py tools)
add_integration_test(tools-list test_tools_list.py tools)
add_integration_test(tools-install test_tools_install.py tools)
set_property(TEST tools-install APPEND PROPERTY ENVIRONMENT
  "LEAFMAIL_BUILD_DIR=${PROJECT_BINARY_DIR}"
  "LEAFMAIL_INSTALL_SBINDIR=${CMAKE_INSTALL_FULL_SBINDIR}"
  "LEAFMAIL_INSTALL_MANDIR=${CMAKE_INSTALL_FULL_MANDIR}"
  "LEAFMAIL_INSTALL_SYSCONFDIR=${CMAKE_INSTALL_FULL_SYSCONFDIR}"
  "LEAFMAIL_INSTALL_DOCDIR=${CMAKE_INSTALL_FULL_DOCDIR}"
  "LEAFMAIL_INSTALL_SPOOL_DIR=${LEAFMAIL_SPOOL_DIR}"
  "LEAFMAIL_INSTALL_UNIT_DIR=${LEAFMAIL_SYSTEMD_UNIT_DIR}")
# The spool as a trust boundary (issue 10): run as root on the installed layout; under
# CI=true nothing in it may skip.
add_integration_test(trust test_trust.py trust)
# What leafmail tells a person (issue 11): peer text escaped, long replies wrapped, the
# Received: line valid for any HELO, configuration mistakes named with line and fix.
add_integration_test(diagnostics test_diagnostics.py tools)
