# Sources of leafmail-flush's library part: the pure SMTP client core (include/leafmail/smtp/),
# its transport (include/leafmail/net/relay_*, tls_*) and the flush logic (include/leafmail/relay/).
target_sources(leafmail PRIVATE
  lib/smtp/reply_parser.cpp
  lib/smtp/dot_stuffer.cpp
  lib/smtp/client_session.cpp
  lib/net/tls_context.cpp
  lib/net/relay_connection.cpp
  lib/relay/credentials.cpp
  lib/relay/delivery.cpp
  lib/relay/dsn.cpp
  lib/relay/flush.cpp
  lib/relay/flush_command.cpp
  lib/relay/queue_relay.cpp
  lib/relay/relay_settings.cpp
  lib/relay/seven_bit_content.cpp
)
