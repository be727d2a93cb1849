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

# Issue 15, the journal: a shim that SIGKILLs leafmaild at a chosen step of the commit, and
# one that checks each 250 comes after the fdatasync covering its record. Plain C like the
# one above, never sanitized, never installed.
add_library(leafmail_crash_at SHARED ${CMAKE_CURRENT_LIST_DIR}/../fault/crash_at.c)
set_target_properties(leafmail_crash_at PROPERTIES COMPILE_OPTIONS "-Wall;-Wextra" LINK_OPTIONS "")
add_library(leafmail_order_check SHARED ${CMAKE_CURRENT_LIST_DIR}/../fault/order_check.c)
set_target_properties(leafmail_order_check PROPERTIES COMPILE_OPTIONS "-Wall;-Wextra" LINK_OPTIONS "")
target_link_libraries(leafmail_order_check PRIVATE Threads::Threads)

add_integration_test(journal test_journal.py receive hardening)
set_property(TEST journal APPEND PROPERTY ENVIRONMENT
             "LEAFMAIL_CRASH_AT_SHIM=$<TARGET_FILE:leafmail_crash_at>"
             "LEAFMAIL_ORDER_CHECK_SHIM=$<TARGET_FILE:leafmail_order_check>")

# Issue 15, the handover: leafmail-sendmail's small messages through leafmaild's journal,
# under the same two shims.
add_integration_test(handover test_handover.py receive tools hardening)
set_property(TEST handover APPEND PROPERTY ENVIRONMENT
             "LEAFMAIL_CRASH_AT_SHIM=$<TARGET_FILE:leafmail_crash_at>"
             "LEAFMAIL_ORDER_CHECK_SHIM=$<TARGET_FILE:leafmail_order_check>")
