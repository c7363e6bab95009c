// SPDX-License-Identifier: MIT
/* `migratectl chaos` in a build without json-c (a cross build). */
#include <stdio.h>

#include "cli.h"

int cmd_chaos(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fputs("migratectl chaos: this build has no chaos runner (it was built without json-c; "
	      "install libjson-c-dev and rebuild)\n", stderr);
	return EXIT_USAGE;
}
