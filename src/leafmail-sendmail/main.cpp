// leafmail-sendmail: the sendmail-compatible injector (see leafmail-sendmail(8)).
#include "leafmail/tools/submit.hpp"

int main(int argc, char* argv[])
{
    return leafmail::tools::sendmail_main(argc, argv);
}
