# The Debian package (src/package.cmake) built with cpack, linted, installed on this machine as
# root, used by an unprivileged user, flushed to a test smarthost and purged clean
# (test_package.py). It changes the machine, so it runs alone; `ctest -L package`.
add_integration_test(package test_package.py package)
set_tests_properties(package PROPERTIES RUN_SERIAL TRUE TIMEOUT 1500)
set_property(TEST package APPEND PROPERTY ENVIRONMENT
  "LEAFMAIL_BUILD_DIR=${PROJECT_BINARY_DIR}"
  "LEAFMAIL_VERSION=${PROJECT_VERSION}")
