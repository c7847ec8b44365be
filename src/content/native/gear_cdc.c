/* Content-defined cut points in C: the same FastCDC as src/content/chunker.ts (the specification,
 * and the fallback), for speed. The Gear table and masks come from chunker.ts, so both cut every
 * stream at the same points; test/content/chunker.test.ts checks that they do.
 *
 * cuts(bytes, gear, minSize, avgSize, maxSize, hardMask, easyMask) -> lengths of the complete
 * chunks of `bytes`, a stream starting at a chunk boundary; the bytes after the last cut are left
 * for the caller (they are not a chunk until more bytes or the stream's end come). */
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include "content.h"

napi_value gear_cuts(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 7) return fail(env, "cuts takes 7 arguments");
  napi_typedarray_type type;
  size_t length, gear_length;
  void *data, *gear_data;
  if (!uint8_arg(env, argv[0], &data, &length)) return fail(env, "bytes must be a Uint8Array");
  if (napi_get_typedarray_info(env, argv[1], &type, &gear_length, &gear_data, NULL, NULL) != napi_ok || type != napi_int32_array || gear_length != 256) return fail(env, "gear must be an Int32Array of 256");
  int64_t p[5];
  for (int i = 0; i < 5; i++) {
    if (napi_get_value_int64(env, argv[2 + i], &p[i]) != napi_ok) return fail(env, "sizes and masks must be numbers");
  }
  const uint8_t *bytes = data;
  const uint32_t *gear = gear_data;
  const size_t min_size = (size_t)p[0], avg_size = (size_t)p[1], max_size = (size_t)p[2];
  const uint32_t hard_mask = (uint32_t)p[3], easy_mask = (uint32_t)p[4];

  napi_value out;
  napi_create_array(env, &out);
  uint32_t count = 0;
  size_t start = 0;
  for (;;) {
    size_t i = start + min_size; /* no cut can fall before minSize: those bytes are not hashed */
    if (i >= length) break;
    uint32_t h = 0;
    size_t cut = 0;
    size_t hard_end = start + avg_size < length ? start + avg_size : length;
    for (; i < hard_end; i++) {
      h = (h << 1) + gear[bytes[i]];
      if ((h & hard_mask) == 0) { cut = i + 1; break; }
    }
    if (cut == 0) {
      size_t easy_end = start + max_size < length ? start + max_size : length;
      for (; i < easy_end; i++) {
        h = (h << 1) + gear[bytes[i]];
        if ((h & easy_mask) == 0) { cut = i + 1; break; }
      }
      if (cut == 0) {
        if (i != start + max_size) break; /* the bytes ran out mid-chunk */
        cut = i;
      }
    }
    napi_value n;
    napi_create_double(env, (double)(cut - start), &n);
    napi_set_element(env, out, count++, n);
    start = cut;
  }
  return out;
}
