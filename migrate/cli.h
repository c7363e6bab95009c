/* SPDX-License-Identifier: MIT */
/* The migratectl front end: one file per subcommand, dispatched from main.c. */
#ifndef MIGRATE_CLI_H
#define MIGRATE_CLI_H

#define EXIT_USAGE 2
#define EXIT_OPERATOR 3

int cmd_vm(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_cancel(int argc, char **argv);

#endif
