# leafmail-sendmail's library part: argument parsing, message fixing, submission.
set(leafmail_sendmail_sources
  ${CMAKE_CURRENT_LIST_DIR}/message.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sendmail_args.cpp
  ${CMAKE_CURRENT_LIST_DIR}/submit.cpp
)
