target_sources(unit_tests PRIVATE
  unit/envelope_test.cpp
  unit/intake_test.cpp
  unit/journal_test.cpp
  unit/queue_id_test.cpp
  unit/spool_test.cpp
  unit/spool_format_test.cpp
  unit/status_test.cpp
)
