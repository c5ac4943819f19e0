#include "CCurl.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

// libcurl's entry points, resolved by ccurl_load().
static struct {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_perform)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} api;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const char *load_error;
static char load_error_text[512];

static void *resolve(void *library, const char *name) {
    void *symbol = dlsym(library, name);
    if (symbol == NULL && load_error == NULL) {
        snprintf(load_error_text, sizeof load_error_text, "libcurl lacks %s", name);
        load_error = load_error_text;
    }
    return symbol;
}

static void load(void) {
    // The runtime library's soname (Debian: libcurl4); the unversioned name needs the -dev package.
    void *library = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) library = dlopen("libcurl.so", RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        const char *reason = dlerror();
        snprintf(load_error_text, sizeof load_error_text, "cannot load libcurl (install libcurl4): %s",
                 reason ? reason : "not found");
        load_error = load_error_text;
        return;
    }
    *(void **)&api.global_init = resolve(library, "curl_global_init");
    *(void **)&api.easy_init = resolve(library, "curl_easy_init");
    *(void **)&api.easy_cleanup = resolve(library, "curl_easy_cleanup");
    *(void **)&api.easy_reset = resolve(library, "curl_easy_reset");
    *(void **)&api.easy_perform = resolve(library, "curl_easy_perform");
    *(void **)&api.easy_strerror = resolve(library, "curl_easy_strerror");
    *(void **)&api.easy_setopt = resolve(library, "curl_easy_setopt");
    *(void **)&api.easy_getinfo = resolve(library, "curl_easy_getinfo");
    *(void **)&api.slist_append = resolve(library, "curl_slist_append");
    *(void **)&api.slist_free_all = resolve(library, "curl_slist_free_all");
    if (load_error != NULL) return;
    CURLcode code = api.global_init(CURL_GLOBAL_DEFAULT);
    if (code != CURLE_OK) {
        snprintf(load_error_text, sizeof load_error_text, "curl_global_init failed: %s", api.easy_strerror(code));
        load_error = load_error_text;
    }
}

const char *ccurl_load(void) {
    pthread_once(&load_once, load);
    return load_error;
}

CURL *ccurl_easy_init(void) { return api.easy_init(); }
void ccurl_easy_cleanup(CURL *handle) { api.easy_cleanup(handle); }
void ccurl_easy_reset(CURL *handle) { api.easy_reset(handle); }
CURLcode ccurl_easy_perform(CURL *handle) { return api.easy_perform(handle); }
const char *ccurl_easy_strerror(CURLcode code) { return api.easy_strerror(code); }
struct curl_slist *ccurl_slist_append(struct curl_slist *list, const char *string) {
    return api.slist_append(list, string);
}
void ccurl_slist_free_all(struct curl_slist *list) {
    if (list != NULL) api.slist_free_all(list);
}

CURLcode ccurl_setopt_long(CURL *handle, CURLoption option, long value) {
    return api.easy_setopt(handle, option, value);
}
CURLcode ccurl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return api.easy_setopt(handle, option, value);
}
CURLcode ccurl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return api.easy_setopt(handle, option, value);
}
CURLcode ccurl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return api.easy_setopt(handle, option, value);
}
CURLcode ccurl_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
    return api.easy_setopt(handle, option, value);
}
CURLcode ccurl_setopt_data_callback(CURL *handle, CURLoption option, ccurl_data_callback callback) {
    return api.easy_setopt(handle, option, callback);
}
CURLcode ccurl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return api.easy_getinfo(handle, info, value);
}
