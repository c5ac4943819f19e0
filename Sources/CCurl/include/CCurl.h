#ifndef CCURL_H
#define CCURL_H
#include <curl/curl.h>

// libcurl is loaded on first use (dlopen), not linked: a listener that never registers never maps
// libcurl and the TLS, Kerberos and LDAP libraries it pulls in (about 5.6 MB of resident memory).
// Call ccurl_load() first; the other functions may be called only after it returned NULL.

// NULL once libcurl is loaded and initialised (curl_global_init), else a message saying what
// failed. Thread-safe; loads once per process.
const char *ccurl_load(void);

CURL *ccurl_easy_init(void);
void ccurl_easy_cleanup(CURL *handle);
void ccurl_easy_reset(CURL *handle);
CURLcode ccurl_easy_perform(CURL *handle);
const char *ccurl_easy_strerror(CURLcode code);
struct curl_slist *ccurl_slist_append(struct curl_slist *list, const char *string);
void ccurl_slist_free_all(struct curl_slist *list);

// curl_easy_setopt and curl_easy_getinfo are variadic: Swift cannot call them.
// These typed wrappers fix the argument type per option family.
CURLcode ccurl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode ccurl_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode ccurl_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode ccurl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value);
CURLcode ccurl_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value);
typedef size_t (*ccurl_data_callback)(char *data, size_t size, size_t count, void *context);
CURLcode ccurl_setopt_data_callback(CURL *handle, CURLoption option, ccurl_data_callback callback);
CURLcode ccurl_getinfo_long(CURL *handle, CURLINFO info, long *value);

// Size the error buffer handed to CURLOPT_ERRORBUFFER must have.
static inline size_t ccurl_error_buffer_size(void) { return CURL_ERROR_SIZE; }
#endif
