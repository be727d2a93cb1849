# Hardening (issue 6), receive side: leafmaild under abuse (slow-loris, connection flood,
# open-relay attempts, command and header injection, SMTP smuggling) and faults (fsync
# failure, full disk, corrupt spool entries), in test_hardening_receive.py.
# Included from tests/CMakeLists.txt after add_integration_test is defined.

# The fsync-failure shim, preloaded into leafmaild by the tests. Plain C, never sanitized
# (it is loaded into a sanitized daemon too) and never installed.
enable_language(C)
add_library(leafmail_fail_fsync SHARED ${CMAKE_CURRENT_LIST_DIR}/../fault/fail_fsync.c)
set_target_properties(leafmail_fail_fsync PROPERTIES COMPILE_OPTIONS "-Wall;-Wextra" LINK_OPTIONS "")

add_integration_test(hardening-receive test_hardening_receive.py hardening)
set_property(TEST hardening-receive APPEND PROPERTY ENVIRONMENT
             "LEAFMAIL_FAIL_FSYNC=$<TARGET_FILE:leafmail_fail_fsync>")
