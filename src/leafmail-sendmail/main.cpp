// leafmail-sendmail: the sendmail-compatible injector (see leafmail-sendmail(8)). Its command
// line is sendmail's own, so the runner only guards it (errors to sysexits statuses).
#include "leafmail/sendmail/submit.hpp"

int main(int argc, char* argv[])
{
    return leafmail::run_guarded(leafmail::sendmail::sendmail_program(),
                                 [&] { return leafmail::sendmail::run_sendmail(argc, argv); });
}
