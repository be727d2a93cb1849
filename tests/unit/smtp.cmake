# Unit tests of the pure SMTP core: explicit list, one file per line.
target_sources(unit_tests PRIVATE
  unit/client_session_test.cpp
  unit/command_test.cpp
  unit/dot_stuffer_test.cpp
  unit/reply_test.cpp
  unit/server_session_test.cpp
)
