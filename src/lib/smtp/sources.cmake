# Sources of the pure SMTP core (include/leafmail/smtp/): explicit list, one file per line.
target_sources(leafmail PRIVATE
  lib/smtp/reply.cpp
  lib/smtp/replies.cpp
  lib/smtp/command.cpp
  lib/smtp/server_session.cpp
)
