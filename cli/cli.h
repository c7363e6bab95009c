/* SPDX-License-Identifier: MIT */
/* The migratectl front end: one file per subcommand, dispatched from main.c. */
#ifndef MIGRATE_CLI_H
#define MIGRATE_CLI_H

#include <getopt.h>
#include <stdbool.h>

#define EXIT_USAGE 2
#define EXIT_OPERATOR 3
/* check: the destination would refuse the VM (a policy refused) */
#define EXIT_INCOMPATIBLE 4

int cmd_vm(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_migrations(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_journal(int argc, char **argv);
int cmd_chaos(int argc, char **argv);
int cmd_hook(int argc, char **argv);
/* Backends' own commands, in their folders: `vm run` is the lab's
 * (backends/lab/lab-run.c; lab-run-absent.c in a build without it). */
int lab_cmd_run(int argc, char **argv);

/* An ENDPOINT argument the commands can reach: 0, or EXIT_USAGE after
 * saying on stderr ("migratectl CMD: WHAT: why") what is wrong with it. */
int cli_check_endpoint(const char *cmd, const char *what, const char *arg);
/* A VM name argument: 0, or EXIT_USAGE after saying what a name may be. */
int cli_check_name(const char *cmd, const char *name);
/* A --key-file the key loader accepts: 0, or EXIT_USAGE after saying why
 * not (a key file is configuration, like an option). */
int cli_check_key_file(const char *cmd, const char *path);
/* The agent at ENDPOINT, both it and key_file (NULL: none) checked first:
 * 0 and *c open, EXIT_USAGE, or 1 (it could not be reached), each said. */
struct mig_client;
int cli_agent_open(const char *cmd, const char *endpoint, const char *key_file,
		   struct mig_client *c);


/* The ssh:// options of every command that reaches agents (client/ssh.c):
 * put CLI_SSH_OPTS in the command's option table and give each option
 * to cli_ssh_option() first: -1 when it is not one of them, 0 when taken,
 * EXIT_USAGE after saying what is wrong with it. */
enum { CLI_OPT_SSH_KEY = 0xf0, CLI_OPT_KNOWN_HOSTS, CLI_OPT_REMOTE_MIGRATECTL };
#define CLI_SSH_OPTS \
	{ "ssh-key", required_argument, NULL, CLI_OPT_SSH_KEY }, \
	{ "known-hosts", required_argument, NULL, CLI_OPT_KNOWN_HOSTS }, \
	{ "remote-migratectl", required_argument, NULL, CLI_OPT_REMOTE_MIGRATECTL }
#define CLI_SSH_USAGE "[--ssh-key F] [--known-hosts F] [--remote-migratectl PATH]"
int cli_ssh_option(const char *cmd, int c, const char *arg);
/* " --ssh-key F --known-hosts F" as given (or ""), for the commands a
 * message tells the user to run against the same ssh:// endpoints. */
const char *cli_ssh_args(void);

/* The options a command has seen so far, by getopt_long's value. */
struct cli_seen {
	bool opt[256];
};
/* Each option at most once: getopt_long would let the last one silently
 * override the first.  0, or EXIT_USAGE after saying "--NAME given twice"
 * (the name from opts, whatever abbreviation was typed).  Values not in
 * opts ('?' for an unknown option) pass through to the caller. */
int cli_once(const char *cmd, const struct option *opts, int c, struct cli_seen *seen);

#endif
