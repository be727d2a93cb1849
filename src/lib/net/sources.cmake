target_sources(leafmail PRIVATE
  lib/net/smtp_server.cpp
)
