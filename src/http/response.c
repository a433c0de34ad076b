/* Response building: status line, headers and the one error envelope format. */
#include "engram/http.h"

#include <string.h>

const char *eg_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

int eg_http_add_header(struct eg_http_req *r, const char *name, const char *value)
{
    if (strpbrk(name, "\r\n") != NULL || strpbrk(value, "\r\n") != NULL)
        return EG_EPARSE;
    return eg_buf_printf(&r->resp_headers, "%s: %s\r\n", name, value);
}

int eg_http_render_head(const struct eg_http_req *r, const char *date, bool keep_alive,
                        struct eg_buf *out)
{
    int rc;

    if (r->is_streaming)
        rc = eg_buf_printf(out,
                           "HTTP/1.1 %d %s\r\n"
                           "Date: %s\r\n"
                           "Content-Type: %s\r\n"
                           "Transfer-Encoding: chunked\r\n"
                           "X-Request-Id: %s\r\n"
                           "Connection: %s\r\n",
                           r->status, eg_http_reason(r->status), date, r->content_type,
                           r->request_id, keep_alive ? "keep-alive" : "close");
    else
        rc = eg_buf_printf(out,
                           "HTTP/1.1 %d %s\r\n"
                           "Date: %s\r\n"
                           "Content-Type: %s\r\n"
                           "Content-Length: %zu\r\n"
                           "X-Request-Id: %s\r\n"
                           "Connection: %s\r\n",
                           r->status, eg_http_reason(r->status), date,
                           r->content_type ? r->content_type : "application/json; charset=utf-8",
                           r->resp_body.len, r->request_id, keep_alive ? "keep-alive" : "close");
    if (rc == 0 && r->resp_headers.len > 0)
        rc = eg_buf_append(out, r->resp_headers.base, r->resp_headers.len);
    if (rc == 0)
        rc = eg_buf_puts(out, "\r\n");
    return rc;
}

void eg_http_respond_json(struct eg_http_req *r, int status, const char *json, size_t len)
{
    eg_buf_reset(&r->resp_body);
    if (eg_buf_append(&r->resp_body, json, len) < 0) {
        eg_buf_reset(&r->resp_body);
        eg_buf_puts(&r->resp_body, "{\"error\":\"response_too_large\"}");
        status = 500;
    }
    eg_http_respond(r, status, NULL);
}

void eg_http_respond_error(struct eg_http_req *r, int status, const char *code)
{
    eg_buf_reset(&r->resp_body);
    eg_buf_printf(&r->resp_body, "{\"error\":\"%s\"}", code);
    eg_http_respond(r, status, NULL);
}
