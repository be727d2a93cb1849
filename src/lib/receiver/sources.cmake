# Sources of the receiver (include/leafmail/receiver/): leafmaild's start-up and serving loop.
set(leafmail_receiver_sources
  ${CMAKE_CURRENT_LIST_DIR}/start_up.cpp
)
