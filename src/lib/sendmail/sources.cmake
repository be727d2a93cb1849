# leafmail-sendmail's library part: argument parsing, message fixing, submission.
target_sources(leafmail PRIVATE
  lib/sendmail/message.cpp
  lib/sendmail/sendmail_args.cpp
  lib/sendmail/submit.cpp
)
