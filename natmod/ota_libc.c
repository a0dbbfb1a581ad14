// ota_libc.c: the C library functions the Rust and C code of both native modules (ota_native,
// ota_ed25519) may call, on MicroPython's function table (docs/toolchain.md pitfall 4).
#include "py/dynruntime.h"

// mpy_ld keeps every function, so the aliases share one body each.

void *ota_memmove(void *dst, const void *src, size_t n) {
    return mp_fun_table.memmove_(dst, src, n);
}
void *memmove(void *dst, const void *src, size_t n) __attribute__((alias("ota_memmove")));
void *memcpy(void *dst, const void *src, size_t n) __attribute__((alias("ota_memmove")));

void *memset(void *s, int c, size_t n) {
    return mp_fun_table.memset_(s, c, n);
}

// memcmp/bcmp are not referenced by the Rust object today; add them here if mpy_ld reports them.

#if defined(__arm__)
// ARM EABI names (memcpy variants may overlap-safely use memmove); note __aeabi_memset's (dest, n, c) order.
// One body for all of them (callers of the void EABI versions ignore r0).
void *__aeabi_memmove(void *d, const void *s, size_t n) __attribute__((alias("ota_memmove")));
void *__aeabi_memmove4(void *d, const void *s, size_t n) __attribute__((alias("ota_memmove")));
void *__aeabi_memmove8(void *d, const void *s, size_t n) __attribute__((alias("ota_memmove")));
void *__aeabi_memcpy(void *d, const void *s, size_t n) __attribute__((alias("ota_memmove")));
void *__aeabi_memcpy4(void *d, const void *s, size_t n) __attribute__((alias("ota_memmove")));
void *__aeabi_memcpy8(void *d, const void *s, size_t n) __attribute__((alias("ota_memmove")));
void __aeabi_memset(void *d, size_t n, int c) {
    mp_fun_table.memset_(d, c, n);
}
void __aeabi_memset4(void *d, size_t n, int c) __attribute__((alias("__aeabi_memset")));
void __aeabi_memset8(void *d, size_t n, int c) __attribute__((alias("__aeabi_memset")));
void __aeabi_memclr(void *d, size_t n) {
    mp_fun_table.memset_(d, 0, n);
}
void __aeabi_memclr4(void *d, size_t n) __attribute__((alias("__aeabi_memclr")));
void __aeabi_memclr8(void *d, size_t n) __attribute__((alias("__aeabi_memclr")));
#endif
