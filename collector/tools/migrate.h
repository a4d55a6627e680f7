#ifndef PX_MIGRATE_H
#define PX_MIGRATE_H

/* `parallax-collector migrate --from sqlite:PATH --to postgresql://…`:
 * copies a SQLite collector database into a PostgreSQL store, verifying
 * every signature and content hash on the way, resumable after any
 * interruption. argv[0] is "migrate". Returns the exit status: 0 all
 * copied and the counts agree, 1 a runtime failure, a refused row or a
 * count that does not agree, 2 a usage error. */
int px_migrate_main(int argc, char **argv);

#endif
