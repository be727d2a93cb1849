// leafmaild: accepts mail over SMTP and freezes each message into the spool. The start-up
// sequence and the serving loop are in receiver/.
#include "leafmail/receiver/start_up.hpp"

int main(int argc, char* argv[])
{
    return leafmail::run_program(argc, argv, leafmail::receiver::daemon_program(),
                                 leafmail::receiver::run_daemon);
}
