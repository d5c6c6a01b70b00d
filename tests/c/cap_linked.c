/* libvgpu memory-cap scenarios in the linked client style: the simulator client's own
 * main() is renamed so cap_scenarios.h can dispatch "cap-*" scenarios and fall back to it. */
#define main sim_scenarios_main
#include "linked.c"
#undef main
int sim_scenarios_main(int argc, char **argv);
#include "cap_scenarios.h"
