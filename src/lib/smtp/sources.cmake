# Sources of the pure SMTP core (include/leafmail/smtp/), server and client side.
set(leafmail_smtp_sources
  ${CMAKE_CURRENT_LIST_DIR}/client_session.cpp
  ${CMAKE_CURRENT_LIST_DIR}/command.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dot_stuffer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/replies.cpp
  ${CMAKE_CURRENT_LIST_DIR}/reply.cpp
  ${CMAKE_CURRENT_LIST_DIR}/reply_parser.cpp
  ${CMAKE_CURRENT_LIST_DIR}/server_session.cpp
)
