# Sources of the transport (include/leafmail/net/): the relay connection and its TLS; it
# knows neither the spool nor the configuration.
set(leafmail_net_sources
  ${CMAKE_CURRENT_LIST_DIR}/relay_connection.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tls_context.cpp
)
