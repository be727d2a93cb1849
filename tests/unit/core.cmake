target_sources(unit_tests PRIVATE
  unit/access_test.cpp
  unit/config_test.cpp
  unit/log_test.cpp
  unit/program_test.cpp
  unit/text_test.cpp
  unit/trace_test.cpp
)
