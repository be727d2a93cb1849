/* Linked into every executable of the sanitized build by .ci/hardening (never part of
 * leafmail). A set-user-ID or set-group-ID program (leafmail-sendmail installed setgid and run
 * by a plain user) is started in secure mode: the sanitizers ignore ASAN_OPTIONS there, and
 * LeakSanitizer cannot stop the world of a process it may not ptrace, so it would end every
 * such run with "LeakSanitizer has encountered a fatal error". Only in secure mode are leaks
 * not checked; everywhere else ASAN_OPTIONS decides as usual (it overrides these defaults). */
#include <sys/auxv.h>

const char* __asan_default_options(void);

const char* __asan_default_options(void)
{
    return getauxval(AT_SECURE) ? "detect_leaks=0" : "";
}
