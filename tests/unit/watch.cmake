# Unit tests of the watching relay's pure parts (paths relative to tests/).
target_sources(unit_tests PRIVATE
  unit/retry_schedule_test.cpp
  unit/route_backoff_test.cpp
  unit/netlink_test.cpp
)
