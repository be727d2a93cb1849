target_sources(leafmail PRIVATE
  lib/receiver/start_up.cpp
)
