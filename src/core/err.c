/* Error strings for negative errno values and engram's own codes. */
#include "engram/core.h"

#include <string.h>

const char *eg_strerror(int code)
{
    switch (code) {
    case 0: return "ok";
    case EG_EAGAIN_INPUT: return "incomplete input";
    case EG_ELIMIT: return "limit exceeded";
    case EG_EPARSE: return "malformed input";
    case EG_EDB: return "database error";
    case EG_ECANCELED: return "canceled";
    case EG_ETIMEDOUT: return "timed out";
    case EG_ECONFIG: return "bad configuration";
    case EG_EUNAVAIL: return "unavailable";
    case EG_ESCHEMA: return "database schema is older than this binary needs";
    default: break;
    }
    if (code < 0 && code > -4096)
        return strerror(-code);
    return "unknown error";
}
