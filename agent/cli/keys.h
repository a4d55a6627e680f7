#ifndef PX_CLI_KEYS_H
#define PX_CLI_KEYS_H

/* Each returns the process exit code. */
int px_cmd_keygen(int argc, char **argv);
int px_cmd_verify(int argc, char **argv);
int px_cmd_submit(int argc, char **argv);
int px_cmd_upload(int argc, char **argv);
int px_cmd_status(int argc, char **argv);

#endif
