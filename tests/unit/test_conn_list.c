#include <stdbool.h>
#include <stddef.h>

#include "collector/http/conn_list.h"
#include "tests/runner.h"

static size_t px__length(const px_conn_link_t *head) {
  size_t n = 0;
  for (; head != NULL; head = head->next) {
    if (head->next != NULL)
      assert_ptr_equal(head->next->prev, head);
    n++;
  }
  return n;
}

/* A connection MHD gave no details of is never linked; closing it must
 * leave the watchdog's list whole (it used to become the empty list). */
PX_TEST(conn_list_unlinked_entry_keeps_the_list) {
  (void)state;
  px_conn_link_t a = {0}, b = {0}, never = {0}, *head = NULL;
  px_conn_list_push(&head, &a);
  px_conn_list_push(&head, &b);
  assert_int_equal(px__length(head), 2);
  px_conn_list_remove(&head, &never);
  assert_ptr_equal(head, &b);
  assert_int_equal(px__length(head), 2);
  /* Twice is harmless too. */
  px_conn_list_remove(&head, &a);
  px_conn_list_remove(&head, &a);
  assert_ptr_equal(head, &b);
  assert_int_equal(px__length(head), 1);
  px_conn_list_remove(&head, &b);
  assert_null(head);
}

/* Removal from the head, the middle and the tail. */
PX_TEST(conn_list_removes_anywhere) {
  (void)state;
  px_conn_link_t e[5] = {{0}}, *head = NULL;
  for (int i = 0; i < 5; i++)
    px_conn_list_push(&head, &e[i]);
  px_conn_list_remove(&head, &e[2]); /* middle */
  px_conn_list_remove(&head, &e[4]); /* head */
  px_conn_list_remove(&head, &e[0]); /* tail */
  assert_int_equal(px__length(head), 2);
  assert_ptr_equal(head, &e[3]);
  assert_ptr_equal(head->next, &e[1]);
  assert_null(head->prev);
  assert_null(e[1].next);
}
