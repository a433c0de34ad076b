/*
 * The decisions of the topic/cursor state machine, pure so they can be tested on their own
 * (tests/unit/sse/test_cursor.c). hub.c does the I/O around them.
 */
#include "engram/sse.h"

enum eg_sse_notice eg_sse_classify_notice(int64_t topic_epoch, int64_t topic_last, int64_t epoch,
                                          int64_t first, int64_t last)
{
    if (epoch != topic_epoch)
        return EG_SSE_NOTICE_EPOCH; /* the log was restored: every position is void */
    if (last <= topic_last)
        return EG_SSE_NOTICE_DUP; /* delivered already (late, repeated, or our own batch) */
    if (first > topic_last + 1)
        return EG_SSE_NOTICE_GAP; /* notices were missed: the read covers them too */
    return EG_SSE_NOTICE_NEW;
}

enum eg_sse_start eg_sse_classify_resume(bool has_resume, int64_t resume_epoch, int64_t resume_seq,
                                         int64_t topic_epoch, int64_t topic_last, bool rechecked)
{
    if (!has_resume)
        return EG_SSE_START_LIVE;
    if (resume_epoch != topic_epoch)
        return EG_SSE_START_RESET;
    if (resume_seq > topic_last)
        /* Another instance may have sequenced it and this one has not read it yet. */
        return rechecked ? EG_SSE_START_RESET : EG_SSE_START_READ_LOG;
    if (resume_seq == topic_last)
        return EG_SSE_START_LIVE;
    return EG_SSE_START_CATCH_UP;
}

bool eg_sse_is_pruned(int64_t cursor, int64_t oldest)
{
    /* oldest: the lowest seq still in the log, or last_seq + 1 when the log is empty. */
    return oldest > 0 && cursor + 1 < oldest;
}
