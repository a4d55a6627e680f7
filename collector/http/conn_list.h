#ifndef PX_CONN_LIST_H
#define PX_CONN_LIST_H

#include <stdbool.h>
#include <stddef.h>

/* The collector's list of open connections (server.c), which its request
 * watchdog walks. A connection whose details MHD could not give is never
 * linked, and unlinking it must not touch the list: taking its NULL prev
 * for "I am the head" once dropped every other connection from the
 * watchdog's sight. The caller holds the lock that guards the list. */
typedef struct px_conn_link {
  struct px_conn_link *prev, *next;
  bool linked;
} px_conn_link_t;

static inline void px_conn_list_push(px_conn_link_t **head, px_conn_link_t *e) {
  e->prev = NULL;
  e->next = *head;
  if (*head != NULL)
    (*head)->prev = e;
  *head = e;
  e->linked = true;
}

/* A no-op for an entry that was never linked (or was unlinked already). */
static inline void px_conn_list_remove(px_conn_link_t **head, px_conn_link_t *e) {
  if (!e->linked)
    return;
  if (e->prev != NULL)
    e->prev->next = e->next;
  else
    *head = e->next;
  if (e->next != NULL)
    e->next->prev = e->prev;
  e->prev = e->next = NULL;
  e->linked = false;
}

#endif
