target_sources(leafmail PRIVATE
  lib/spool/envelope.cpp
  lib/spool/queue_id.cpp
  lib/spool/spool.cpp
)
