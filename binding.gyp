{
  "targets": [
    {
      "target_name": "orbit_fuse",
      "sources": ["src/fuse/native/orbit_fuse.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "cflags_c": ["-std=gnu11"],
      "libraries": ["<!@(pkg-config --libs fuse3)"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "orbit_content",
      "sources": ["src/content/native/addon.c", "src/content/native/gear_cdc.c", "src/content/native/shared_copy.c"],
      "cflags": ["-O3", "-Wall", "-Wextra"],
      "cflags_c": ["-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "orbit_pool",
      "sources": ["src/pool/native/crc32c.c"],
      "cflags": ["-O3", "-Wall", "-Wextra"],
      "cflags_c": ["-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
