/* Driver-API client linked with -lcuda: calls every entry point directly by its exported
 * symbol name, as a program built against the CUDA toolkit does. See driver_scenarios.h. */
#include "vgpu_test_api.h"

#include <dlfcn.h>

#define API(sym) sym

#ifdef VGPU_REAL_HEADERS
static const char *CLIENT_STYLE = "linked-real-headers";
#else
static const char *CLIENT_STYLE = "linked";
#endif

static int client_load(void) { return 0; }
static void *client_dlsym(const char *name) { return dlsym(RTLD_DEFAULT, name); }

#include "driver_scenarios.h"
