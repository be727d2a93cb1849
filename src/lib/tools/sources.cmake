# Sources of the operator tools' library part: leafmail-list (listing, JSON, queue actions)
# and leafmail-sendmail (argument parsing, message fixing, submission).
find_package(nlohmann_json 3 REQUIRED)
target_sources(leafmail PRIVATE
  lib/tools/list_command.cpp
  lib/tools/listing.cpp
  lib/tools/message.cpp
  lib/tools/queue_actions.cpp
  lib/tools/sendmail_args.cpp
  lib/tools/submit.cpp
)
target_link_libraries(leafmail PRIVATE nlohmann_json::nlohmann_json)
