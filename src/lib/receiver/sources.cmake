# Sources of the receiver (include/leafmail/receiver/): leafmaild's listener and sessions
# (policy: access, limits, intake), its start-up and serving loop.
set(leafmail_receiver_sources
  ${CMAKE_CURRENT_LIST_DIR}/handover_listener.cpp
  ${CMAKE_CURRENT_LIST_DIR}/smtp_server.cpp
  ${CMAKE_CURRENT_LIST_DIR}/start_up.cpp
)
