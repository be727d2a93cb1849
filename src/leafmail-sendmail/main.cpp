// leafmail-sendmail: the sendmail-compatible injector (see leafmail-sendmail(8)).
#include "leafmail/sendmail/submit.hpp"

int main(int argc, char* argv[])
{
    return leafmail::sendmail::sendmail_main(argc, argv);
}
