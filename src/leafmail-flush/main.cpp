// leafmail-flush: relays the spool to the smarthost once, then exits with a status that
// scripts can act on (0 nothing pending, 75 something deferred). The logic is in relay/.
#include "leafmail/relay/flush_command.hpp"

int main(int argc, char* argv[])
{
    return leafmail::run_program(argc, argv, leafmail::relay::flush_program(),
                                 leafmail::relay::run_flush_command);
}
