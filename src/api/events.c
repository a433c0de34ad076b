/*
 * GET /api/v1/events/memories: CORE's memory event stream (core-contract.md §5.2) on the durable
 * event log, with ids and resume (DECISIONS.md item 10; src/sse/hub.c does the work).
 */
#include "api_int.h"

#include <string.h>

#include "engram/sse.h"

void eg__api_events(struct eg_app *app, struct eg_http_req *r)
{
    size_t n = 0;
    const char *subject = eg__api_query(r, "subject_id", &n);
    const char *resume = eg_http_req_header(r, "last-event-id", NULL);
    const char *include;

    /* CORE: trimmed; empty means every subject of the project. */
    if (subject != NULL) {
        subject = eg__api_trim(subject, &n);
        subject = n > 0 ? eg_arena_strndup(&r->arena, subject, n) : NULL;
        /* CORE treats a subscription to subject "*" as project-wide (kept; only its double
         * delivery is gone, DECISIONS.md item 10). */
        if (subject != NULL && strcmp(subject, "*") == 0)
            subject = NULL;
    }
    /* EventSource cannot set headers on its first connect, so the query works too. */
    if (resume == NULL)
        resume = eg__api_query(r, "last_event_id", NULL);
    include = eg__api_query(r, "include", NULL);
    eg_sse_subscribe(app->sse, r, eg__api_project(r), subject, resume,
                     include != NULL && strcmp(include, "claims") == 0, eg__api_key_id(r));
}
