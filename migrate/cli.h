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
int cmd_migrations(int argc, char **argv);

/* An ENDPOINT argument the commands can reach: 0, or EXIT_USAGE after
 * saying on stderr ("migratectl CMD: WHAT: why") what is wrong with it. */
int cli_check_endpoint(const char *cmd, const char *what, const char *arg);
/* A VM name argument: 0, or EXIT_USAGE after saying what a name may be. */
int cli_check_name(const char *cmd, const char *name);
/* A --key-file the key loader accepts: 0, or EXIT_USAGE after saying why
 * not (a key file is configuration, like an option). */
int cli_check_key_file(const char *cmd, const char *path);

#endif
