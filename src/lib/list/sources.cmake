# leafmail-list's library part: listing, JSON, queue actions and the command line.
find_package(nlohmann_json 3 REQUIRED)
target_sources(leafmail PRIVATE
  lib/list/list_command.cpp
  lib/list/listing.cpp
  lib/list/queue_actions.cpp
)
target_link_libraries(leafmail PRIVATE nlohmann_json::nlohmann_json)
