# Unit tests of leafmail-flush's library part (paths relative to tests/).
target_sources(unit_tests PRIVATE
  unit/dsn_test.cpp
  unit/from_rewriter_test.cpp
  unit/queue_relay_test.cpp
  unit/relay_settings_test.cpp
  unit/relay_credentials_test.cpp
  unit/secret_command_test.cpp
  unit/seven_bit_content_test.cpp
)
