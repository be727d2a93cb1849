# The watching relay (leafmail-flush --watch): retry schedule and per-route backoff (pure),
# the kernel link monitor, the queue watcher and the kick channel.
set(leafmail_watch_sources
  ${CMAKE_CURRENT_LIST_DIR}/netlink.cpp
  ${CMAKE_CURRENT_LIST_DIR}/retry_schedule.cpp
  ${CMAKE_CURRENT_LIST_DIR}/route_backoff.cpp
  ${CMAKE_CURRENT_LIST_DIR}/watcher.cpp
)
