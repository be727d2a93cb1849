// leafmail-list: shows the spool and manages its entries (see leafmail-list(8)).
#include "leafmail/tools/list_command.hpp"

int main(int argc, char* argv[])
{
    return leafmail::tools::list_main(argc, argv);
}
