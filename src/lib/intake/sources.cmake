target_sources(leafmail PRIVATE
  lib/intake/intake.cpp
)
