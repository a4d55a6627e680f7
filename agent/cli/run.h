#ifndef PX_CLI_RUN_H
#define PX_CLI_RUN_H

/* Each returns the process exit code. */
int px_cmd_run(int argc, char **argv);
int px_cmd_compare(int argc, char **argv);
int px_cmd_setup(int argc, char **argv);
int px_cmd_config(int argc, char **argv);
int px_cmd_audit(int argc, char **argv);
/* parallax verify --log URL: this agent's sent measurements proven in the
 * collector's signed log (agent/cli/audit.c). */
int px_verify_log(const char *collector, const char *state_dir_flag);

#endif
