# Sources of the relay (include/leafmail/relay/): settings, queue side, delivery states,
# notifications and leafmail-flush's command.
set(leafmail_relay_sources
  ${CMAKE_CURRENT_LIST_DIR}/credentials.cpp
  ${CMAKE_CURRENT_LIST_DIR}/delivery.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dsn.cpp
  ${CMAKE_CURRENT_LIST_DIR}/flush.cpp
  ${CMAKE_CURRENT_LIST_DIR}/flush_command.cpp
  ${CMAKE_CURRENT_LIST_DIR}/from_rewriter.cpp
  ${CMAKE_CURRENT_LIST_DIR}/queue_relay.cpp
  ${CMAKE_CURRENT_LIST_DIR}/relay_settings.cpp
  ${CMAKE_CURRENT_LIST_DIR}/secret_command.cpp
  ${CMAKE_CURRENT_LIST_DIR}/seven_bit_content.cpp
)
