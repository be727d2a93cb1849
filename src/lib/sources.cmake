target_sources(leafmail PRIVATE
  lib/access.cpp
  lib/config.cpp
  lib/log.cpp
  lib/program.cpp
  lib/privileges.cpp
  lib/trace.cpp
)
