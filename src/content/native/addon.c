/* The content layer's addon: content-defined cut points and copies into shared memory (see
 * src/content/native.ts). */
#include "content.h"

napi_value fail(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

bool uint8_arg(napi_env env, napi_value v, void **data, size_t *length) {
  napi_typedarray_type type;
  return napi_get_typedarray_info(env, v, &type, length, data, NULL, NULL) == napi_ok && type == napi_uint8_array;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "cuts", NAPI_AUTO_LENGTH, gear_cuts, NULL, &fn);
  napi_set_named_property(env, exports, "cuts", fn);
  napi_create_function(env, "copy", NAPI_AUTO_LENGTH, shared_copy, NULL, &fn);
  napi_set_named_property(env, exports, "copy", fn);
  return exports;
}
