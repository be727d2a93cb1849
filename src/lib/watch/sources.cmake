# The watching relay (leafmail-flush --watch): retry schedule and per-route backoff (pure),
# the kernel link monitor, the queue watcher and the kick channel.
target_sources(leafmail PRIVATE
  lib/watch/retry_schedule.cpp
  lib/watch/route_backoff.cpp
  lib/watch/netlink.cpp
  lib/watch/watcher.cpp
)
