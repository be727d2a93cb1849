#pragma once
// Exit codes of every leafmail program: the <sysexits.h> values, named once.
#include <sysexits.h>

namespace leafmail::exit_status {
inline constexpr int ok = EX_OK;                   // 0
inline constexpr int usage = EX_USAGE;             // 64: bad command line
inline constexpr int data_error = EX_DATAERR;      // 65: bad input data (e.g. no recipients)
inline constexpr int no_user = EX_NOUSER;          // 67
inline constexpr int unavailable = EX_UNAVAILABLE; // 69
inline constexpr int software = EX_SOFTWARE;       // 70: internal error
inline constexpr int os_error = EX_OSERR;          // 71
inline constexpr int cant_create = EX_CANTCREAT;   // 73: cannot create spool or files
inline constexpr int io_error = EX_IOERR;          // 74
inline constexpr int temp_fail = EX_TEMPFAIL;      // 75: try again later (deferred, spool full)
inline constexpr int no_permission = EX_NOPERM;    // 77
inline constexpr int config = EX_CONFIG;           // 78: bad configuration
} // namespace leafmail::exit_status
