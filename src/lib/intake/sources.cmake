# Sources of the intake (include/leafmail/intake/): the one way into the spool.
set(leafmail_intake_sources
  ${CMAKE_CURRENT_LIST_DIR}/intake.cpp
)
