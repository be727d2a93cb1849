# Unit tests of the operator tools' library parts (leafmail-list, leafmail-sendmail).
target_sources(unit_tests PRIVATE
  unit/listing_test.cpp
  unit/message_test.cpp
  unit/queue_actions_test.cpp
  unit/sendmail_args_test.cpp
  unit/status_report_test.cpp
  unit/submit_test.cpp
)
target_link_libraries(unit_tests PRIVATE nlohmann_json::nlohmann_json)
