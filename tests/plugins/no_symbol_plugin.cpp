// A shared library that is not an epcomm backend (no epcommBackend_v1).
extern "C" __attribute__((visibility("default"))) int somethingElse() {
  return 1;
}
