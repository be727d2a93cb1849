# Sources of src/lib/ itself (program runner, configuration, log, text helpers): explicit list,
# one file per line. Each module folder lists its own files the same way; the fuzz project
# (tests/fuzz/CMakeLists.txt) reads the same lists.
set(leafmail_common_sources
  ${CMAKE_CURRENT_LIST_DIR}/access.cpp
  ${CMAKE_CURRENT_LIST_DIR}/config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/log.cpp
  ${CMAKE_CURRENT_LIST_DIR}/privileges.cpp
  ${CMAKE_CURRENT_LIST_DIR}/program.cpp
  ${CMAKE_CURRENT_LIST_DIR}/text.cpp
  ${CMAKE_CURRENT_LIST_DIR}/trace.cpp
)
