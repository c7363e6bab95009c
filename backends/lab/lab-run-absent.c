// SPDX-License-Identifier: MIT
/* migratectl vm run in a build without the lab VM (backends/lab/meson.build). */
#include <stdio.h>

#include "cli.h"

int lab_cmd_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "migratectl vm run: %s\n", LAB_ABSENT_WHY);
	return 1;
}
