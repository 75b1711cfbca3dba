/* luaopen_pipedrive_sandbox_httpd: the sandbox's build of the server in
 * httpd.c, with fault injection: a handler may answer "drop", add a fourth
 * result holding its answer back (seconds) or cutting/dripping its body
 * ({ cut, drip, interval }), and srv:stats() counts held answers and the peak
 * in flight (see httpd.c's header). Only the sandbox loads this module
 * (lua/pipedrive/sandbox/); the listener users run, pipedrive.httpd, is
 * compiled from the same file without any of it. */
#define PD_HTTPD_FAULTS 1
#define PD_HTTPD_LUAOPEN luaopen_pipedrive_sandbox_httpd
#define PD_HTTPD_MT "pipedrive.sandbox.httpd"
#include "httpd.c"
