// leafmail-list: shows the spool and manages its entries (see leafmail-list(8)).
#include "leafmail/list/list_command.hpp"

int main(int argc, char* argv[])
{
    return leafmail::run_program(argc, argv, leafmail::list::list_program(),
                                 leafmail::list::run_list);
}
