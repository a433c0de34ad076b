/* The topic/cursor state machine's decisions (src/sse/cursor.c) and bus notice parsing. */
#include "engram/bus.h"
#include "engram/sse.h"
#include "harness.h"

/* A topic at epoch 7 that has delivered up to seq 10. */
TEST(notice_continuing_the_log_is_new)
{
    ASSERT_EQ(EG_SSE_NOTICE_NEW, eg_sse_classify_notice(7, 10, 7, 11, 11));
    ASSERT_EQ(EG_SSE_NOTICE_NEW, eg_sse_classify_notice(7, 10, 7, 11, 500));
    /* Overlapping what was delivered (a batch read partly by the catch-up poll): still news. */
    ASSERT_EQ(EG_SSE_NOTICE_NEW, eg_sse_classify_notice(7, 10, 7, 5, 12));
}

TEST(notice_for_delivered_seqs_is_a_duplicate)
{
    ASSERT_EQ(EG_SSE_NOTICE_DUP, eg_sse_classify_notice(7, 10, 7, 10, 10));
    ASSERT_EQ(EG_SSE_NOTICE_DUP, eg_sse_classify_notice(7, 10, 7, 1, 3));
    /* The local sequencer delivered the rows in hand; its own notice comes back later. */
    ASSERT_EQ(EG_SSE_NOTICE_DUP, eg_sse_classify_notice(7, 10, 7, 6, 10));
}

TEST(notice_past_a_gap_is_a_gap)
{
    ASSERT_EQ(EG_SSE_NOTICE_GAP, eg_sse_classify_notice(7, 10, 7, 12, 12));
    ASSERT_EQ(EG_SSE_NOTICE_GAP, eg_sse_classify_notice(7, 0, 7, 2, 9));
}

TEST(notice_from_another_epoch_voids_positions)
{
    ASSERT_EQ(EG_SSE_NOTICE_EPOCH, eg_sse_classify_notice(7, 10, 8, 11, 11));
    /* Even one that would be a duplicate by seq. */
    ASSERT_EQ(EG_SSE_NOTICE_EPOCH, eg_sse_classify_notice(7, 10, 6, 1, 2));
}

TEST(start_without_resume_is_live)
{
    ASSERT_EQ(EG_SSE_START_LIVE, eg_sse_classify_resume(false, 0, 0, 7, 10, false));
}

TEST(resume_positions)
{
    ASSERT_EQ(EG_SSE_START_LIVE, eg_sse_classify_resume(true, 7, 10, 7, 10, false));
    ASSERT_EQ(EG_SSE_START_CATCH_UP, eg_sse_classify_resume(true, 7, 3, 7, 10, false));
    ASSERT_EQ(EG_SSE_START_CATCH_UP, eg_sse_classify_resume(true, 7, 0, 7, 10, false));
    /* Ahead of what this instance read: read the log once, then it is really ahead. */
    ASSERT_EQ(EG_SSE_START_READ_LOG, eg_sse_classify_resume(true, 7, 11, 7, 10, false));
    ASSERT_EQ(EG_SSE_START_RESET, eg_sse_classify_resume(true, 7, 11, 7, 10, true));
    ASSERT_EQ(EG_SSE_START_RESET, eg_sse_classify_resume(true, 6, 3, 7, 10, false));
    /* An id that was not ours parses to epoch -1. */
    ASSERT_EQ(EG_SSE_START_RESET, eg_sse_classify_resume(true, -1, 0, 7, 10, false));
}

TEST(pruned_positions)
{
    ASSERT_TRUE(!eg_sse_is_pruned(3, 1));
    ASSERT_TRUE(!eg_sse_is_pruned(3, 4)); /* the next event is still there */
    ASSERT_TRUE(eg_sse_is_pruned(3, 5));
    ASSERT_TRUE(eg_sse_is_pruned(0, 2));
    /* A fully pruned log reports last_seq + 1: a position at the head is fine. */
    ASSERT_TRUE(!eg_sse_is_pruned(10, 11));
    ASSERT_TRUE(eg_sse_is_pruned(9, 11));
    ASSERT_TRUE(!eg_sse_is_pruned(5, 0)); /* unknown project */
}

TEST(notice_parsing)
{
    int64_t e = 0;
    int64_t f = 0;
    int64_t l = 0;
    const char *p = NULL;

    ASSERT_EQ(0, eg_bus_parse_notice("1700000000000:5:9", 17, false, &e, &f, &l, &p));
    ASSERT_EQ(1700000000000, e);
    ASSERT_EQ(5, f);
    ASSERT_EQ(9, l);
    ASSERT_TRUE(p == NULL);
    ASSERT_EQ(0, eg_bus_parse_notice("3:1:1:proj:with:colons", 22, true, &e, &f, &l, &p));
    ASSERT_EQ(3, e);
    ASSERT_STR_EQ("proj:with:colons", p);
    ASSERT_EQ(0, eg_bus_parse_notice("3:1:1:", 6, true, &e, &f, &l, &p)); /* empty project */
    ASSERT_STR_EQ("", p);
}

TEST(notice_parsing_rejects)
{
    static const char *const bad[] = {
        "",
        "1",
        "1:2",
        "1:2:",
        "1:2:3:",
        "a:1:2",
        "1:0:0",
        "1:5:4",
        "1:2:3x",
        "-1:2:3",
        "1:2:99999999999999999999",
        " 1:2:3",
    };
    int64_t e;
    int64_t f;
    int64_t l;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ(EG_EPARSE, eg_bus_parse_notice(bad[i], strlen(bad[i]), false, &e, &f, &l, NULL));
    ASSERT_EQ(EG_EPARSE, eg_bus_parse_notice("1:2:3", 5, true, &e, &f, &l, NULL));
}

int main(void)
{
    static const struct test_case t[] = {
        TEST_CASE(notice_continuing_the_log_is_new),
        TEST_CASE(notice_for_delivered_seqs_is_a_duplicate),
        TEST_CASE(notice_past_a_gap_is_a_gap),
        TEST_CASE(notice_from_another_epoch_voids_positions),
        TEST_CASE(start_without_resume_is_live),
        TEST_CASE(resume_positions),
        TEST_CASE(pruned_positions),
        TEST_CASE(notice_parsing),
        TEST_CASE(notice_parsing_rejects),
    };
    return RUN_TESTS(t);
}
