/* The content layer's addon, orbit_content: one function per file, registered in addon.c. */
#ifndef ORBIT_CONTENT_H
#define ORBIT_CONTENT_H
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>

/* addon.c: throws a TypeError with msg and returns NULL, for `return fail(env, ...)`. */
napi_value fail(napi_env env, const char *msg);
/* addon.c: the bytes of a Uint8Array argument; false when it is not one. */
bool uint8_arg(napi_env env, napi_value v, void **data, size_t *length);

/* gear_cdc.c: cuts(bytes, gear, minSize, avgSize, maxSize, hardMask, easyMask) -> chunk lengths */
napi_value gear_cuts(napi_env env, napi_callback_info info);
/* shared_copy.c: copy(target, at, source) */
napi_value shared_copy(napi_env env, napi_callback_info info);

#endif
