# Unit tests of leafmail-flush's library part (paths relative to tests/).
target_sources(unit_tests PRIVATE
  unit/client_session_test.cpp
  unit/dot_stuffer_test.cpp
  unit/dsn_test.cpp
  unit/queue_relay_test.cpp
  unit/relay_settings_test.cpp
  unit/relay_credentials_test.cpp
  unit/seven_bit_content_test.cpp
)
