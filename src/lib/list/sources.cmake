# leafmail-list's library part: listing, JSON, queue actions and the command.
set(leafmail_list_sources
  ${CMAKE_CURRENT_LIST_DIR}/list_command.cpp
  ${CMAKE_CURRENT_LIST_DIR}/listing.cpp
  ${CMAKE_CURRENT_LIST_DIR}/queue_actions.cpp
  ${CMAKE_CURRENT_LIST_DIR}/status_report.cpp
)
