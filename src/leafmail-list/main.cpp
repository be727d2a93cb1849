// leafmail-list: shows the spool and manages its entries (see leafmail-list(8)).
#include "leafmail/list/list_command.hpp"

int main(int argc, char* argv[])
{
    return leafmail::list::list_main(argc, argv);
}
