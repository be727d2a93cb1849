# Sources of the spool (include/leafmail/spool/): the only code that touches spool files.
set(leafmail_spool_sources
  ${CMAKE_CURRENT_LIST_DIR}/envelope.cpp
  ${CMAKE_CURRENT_LIST_DIR}/handover.cpp
  ${CMAKE_CURRENT_LIST_DIR}/journal.cpp
  ${CMAKE_CURRENT_LIST_DIR}/queue_id.cpp
  ${CMAKE_CURRENT_LIST_DIR}/spool.cpp
  ${CMAKE_CURRENT_LIST_DIR}/status.cpp
)
