# Sources of the transport (include/leafmail/net/): the SMTP listener, the relay connection
# and its TLS.
set(leafmail_net_sources
  ${CMAKE_CURRENT_LIST_DIR}/relay_connection.cpp
  ${CMAKE_CURRENT_LIST_DIR}/smtp_server.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tls_context.cpp
)
