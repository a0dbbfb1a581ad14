// ota_ed25519: the Ed25519 verifier, a second MicroPython native module over the Rust core
// (natmod/src/ed25519.rs -> core/src/sign.rs). The updater (python/ota_sign.py) imports it only
// to check a signed manifest and drops it before the downloads, so an update without signatures
// loads no code of it, and ota_native.mpy stays as small as it was.
//
//   Verifier(public_key, signature)   32 and 64 bytes (any buffer but str)
//   .update(buf, n=-1, /)             the next bytes of the message
//   .verify()                         True when the signature is valid for them; else ValueError
//
// As in ota_native.c, the glue only converts: arguments are bound and checked by the core
// (ota_ed_bind, ota_core::api), errors are the core's codes raised with the core's messages.
//
// The stack: the curve arithmetic of Verifier() and verify() needs several KB of stack, and the
// RP2040's main stack is 8 KiB shared with the interpreter's frames (nothing stops an overflow
// there from running into other memory). So on ARM those two calls run on a stack of their own
// (ota_ed_on_stack): a block of the heap that the import allocates (freed with the module),
// painted before each call and whose bottom OTA_ED_GUARD bytes are checked after it. Its size is
// the peak measured on the emulated RP2040 (tests/test_sign_native.py) plus that guard and room
// for interrupt frames (an interrupt pushes onto the stack in use). The Rust code called there
// never calls back into MicroPython (no allocation, no GC scan of a foreign stack). On x64 (the
// unix port, whose main stack is 8 MB) they run on the interpreter's stack.
#include "py/dynruntime.h"

// ---- Rust side (natmod/src/ed25519.rs) ----------------------------------------------------
intptr_t ota_ed_bind(int call, intptr_t arg, uint16_t *bound);
size_t ota_ed_state_size(void);
int ota_ed_new(void *st, const uint8_t *key, size_t key_len, const uint8_t *sig, size_t sig_len);
int ota_ed_update(void *st, const uint8_t *buf, size_t len, mp_int_t n);
int ota_ed_verify(void *st);
const uint8_t *ota_ed_error_message(int code, size_t *len);

// The calls of ota_core::api::Call (natmod's cargo test checks these against the core).
#define CALL_UPDATE 4
#define CALL_VERIFIER 7
#define CALL_VERIFY 8
// The keywords of Verifier(), by their index in ota_core::api::NAMES; any other is unknown.
#define KW_PUBLIC_KEY 8
#define KW_SIGNATURE 9
#define KW_UNKNOWN 10
// Core error codes the glue raises itself. TypeError from ERR_ARG_COUNT to ERR_NOT_BUFFER,
// ValueError for the others (ota_core::Error::exception).
#define ERR_INTERNAL 22 // ota_core::Error::Internal
#define ERR_ARG_COUNT 23 // ota_core::Error::ArgCount
#define ERR_NOT_BUFFER 27 // ota_core::Error::NotBuffer
// An int for Rust (ota_core::api::Int), as in ota_native.c.
#define OTA_ABSENT INTPTR_MIN // ota_core::api::ABSENT
#define OTA_NOT_INT (INTPTR_MIN + 1) // ota_core::api::NOT_INT
#define OTA_BIG INTPTR_MAX // ota_core::api::BIG
#define OTA_BIND_END INTPTR_MIN // natmod ed25519::BIND_END

// The stack of Verifier() and verify() on ARM (see the top). Peaks measured on the emulated
// Cortex-M0+ (tests/test_sign_native.py checks them): 5.35 KB (Verifier(): decoding the key and
// R) and 3.9 KB (verify()); the rest is for interrupt frames and the guard.
#define OTA_ED_STACK 7168
#define OTA_ED_GUARD 256
#define OTA_ED_PAINT 0xa5

typedef struct _ota_ed_obj_t {
    mp_obj_base_t base;
    uint64_t state[]; // the Rust Verifier, 8-byte aligned
} ota_ed_obj_t;

mp_obj_full_type_t ota_ed_type; // filled by mpy_init (no writable data: docs/toolchain.md pitfall 3)
mp_map_elem_t ota_ed_methods[2];
#if defined(__thumb__)
uint8_t *ota_ed_stack; // the stack of its own, from mpy_init (the module's bss keeps it alive)
#endif
static MP_DEFINE_CONST_DICT_WITH_SIZE(ota_ed_dict, ota_ed_methods, 2);

// ---- errors, ints and arguments (as ota_native.c) ------------------------------------------

static NORETURN void ota_ed_raise(int code) {
    size_t len;
    const uint8_t *msg = ota_ed_error_message(code, &len);
    qstr t = code >= ERR_ARG_COUNT && code <= ERR_NOT_BUFFER ? MP_QSTR_TypeError : MP_QSTR_ValueError;
    mp_raise_type_arg((const mp_obj_type_t *)mp_load_global(t), mp_obj_new_str((const char *)msg, len));
}

// Rust panic handler (the core does not panic on input): raise instead of hanging.
NORETURN void ota_panic(void) {
    ota_ed_raise(ERR_INTERNAL);
}

static mp_int_t ota_ed_int(mp_obj_t o) {
    if (o == MP_OBJ_NULL) {
        return OTA_ABSENT;
    }
    if (mp_obj_is_small_int(o)) {
        return MP_OBJ_SMALL_INT_VALUE(o);
    }
    return mp_obj_get_type(o) == mp_obj_get_type(MP_OBJ_NEW_SMALL_INT(0)) ? OTA_BIG : OTA_NOT_INT;
}

// Binds a call's arguments to slots with the core's table: args[0, n_args) positional, then
// n_kw (name qstr, value) pairs.
static void ota_ed_bind_args(int call, size_t n_args, size_t n_kw, const mp_obj_t *args, mp_obj_t *slot) {
    uint16_t bound = 0;
    for (size_t i = 0; i <= n_args + n_kw; i++) {
        intptr_t arg = i;
        mp_obj_t v = MP_OBJ_NULL;
        if (i == n_args + n_kw) {
            arg = OTA_BIND_END;
        } else if (i < n_args) {
            v = args[i];
        } else {
            const mp_obj_t *kv = args + n_args + 2 * (i - n_args);
            intptr_t k = kv[0] == MP_OBJ_NEW_QSTR(MP_QSTR_public_key) ? KW_PUBLIC_KEY
                : kv[0] == MP_OBJ_NEW_QSTR(MP_QSTR_signature) ? KW_SIGNATURE : KW_UNKNOWN;
            arg = -1 - k;
            v = kv[1];
        }
        intptr_t s = ota_ed_bind(call, arg, &bound);
        if (s < 0) {
            ota_ed_raise((int)-s);
        }
        if (v != MP_OBJ_NULL) {
            slot[s] = v;
        }
    }
}

// A read buffer (not a str, as on CPython), else the core's NotBuffer.
static void ota_ed_buffer(mp_obj_t o, mp_buffer_info_t *bi) {
    if (!mp_get_buffer(o, bi, MP_BUFFER_READ) || mp_obj_is_str(o)) {
        ota_ed_raise(ERR_NOT_BUFFER);
    }
}

// ---- the stack of its own -------------------------------------------------------------------

// fn(st, a, b, c, d) on the stack that ends at `top` (8-byte aligned); returns its result.
typedef int (*ota_ed_fn)(void *st, const void *a, size_t b, const void *c, size_t d);

#if defined(__thumb__)
static int ota_ed_switch(ota_ed_fn fn, void *top, void *st, const void *a, size_t b, const void *c, size_t d) {
    // Arguments in r0-r3 and the fifth on the new stack (AAPCS); r4 keeps the old sp (callee-saved).
    uint32_t *sp = (uint32_t *)top - 2;
    sp[0] = (uint32_t)d;
    register uintptr_t r0 __asm__("r0") = (uintptr_t)st;
    register uintptr_t r1 __asm__("r1") = (uintptr_t)a;
    register uintptr_t r2 __asm__("r2") = (uintptr_t)b;
    register uintptr_t r3 __asm__("r3") = (uintptr_t)c;
    __asm__ volatile (
        "mov r4, sp\n\t"
        "mov sp, %[sp]\n\t"
        "blx %[fn]\n\t"
        "mov sp, r4\n\t"
        : "+r" (r0), "+r" (r1), "+r" (r2), "+r" (r3)
        : [sp] "l" (sp), [fn] "l" (fn)
        : "r4", "r12", "lr", "cc", "memory");
    return (int)r0;
}

// fn(...) on the module's stack of OTA_ED_STACK bytes, painted first; a call that reached into
// its bottom OTA_ED_GUARD bytes raises (Internal).
static int ota_ed_on_stack(ota_ed_fn fn, void *st, const void *a, size_t b, const void *c, size_t d) {
    uint8_t *stack = ota_ed_stack;
    mp_fun_table.memset_(stack, OTA_ED_PAINT, OTA_ED_STACK);
    void *top = (void *)(((uintptr_t)stack + OTA_ED_STACK) & ~(uintptr_t)7);
    int r = ota_ed_switch(fn, top, st, a, b, c, d);
    int touched = 0;
    for (int i = 0; i < OTA_ED_GUARD; i++) {
        touched |= stack[i] != OTA_ED_PAINT;
    }
#ifdef OTA_ED_STACK_REPORT // make ... CFLAGS_EXTRA=-DOTA_ED_STACK_REPORT: print each call's peak
    int used = 0;
    while (used < OTA_ED_STACK && stack[used] == OTA_ED_PAINT) {
        used++;
    }
    mp_printf(&mp_plat_print, "ota_ed25519: stack peak %d of %d\n", OTA_ED_STACK - used, OTA_ED_STACK);
#endif
    if (touched) {
        ota_ed_raise(ERR_INTERNAL);
    }
    return r;
}
#else
static int ota_ed_on_stack(ota_ed_fn fn, void *st, const void *a, size_t b, const void *c, size_t d) {
    return fn(st, a, b, c, d);
}
#endif

static int ota_ed_verify_any(void *st, const void *a, size_t b, const void *c, size_t d) {
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    return ota_ed_verify(st);
}

// ---- Verifier ------------------------------------------------------------------------------

// Verifier(public_key, signature): slots 0 and 1 (ota_core::api::PUBLIC_KEY, SIGNATURE).
static mp_obj_t ota_ed_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_obj_t a[2] = { MP_OBJ_NULL, MP_OBJ_NULL };
    ota_ed_bind_args(CALL_VERIFIER, n_args, n_kw, args, a);
    mp_buffer_info_t key, sig;
    ota_ed_buffer(a[0], &key);
    ota_ed_buffer(a[1], &sig);
    size_t size = sizeof(ota_ed_obj_t) + ota_ed_state_size();
    ota_ed_obj_t *o = m_malloc(size);
    if (o == NULL) {
        nlr_raise(mp_load_global(MP_QSTR_MemoryError));
    }
    mp_fun_table.memset_(o, 0, size);
    int err = ota_ed_on_stack((ota_ed_fn)ota_ed_new, o->state, key.buf, key.len, sig.buf, sig.len);
    if (err != 0) {
        ota_ed_raise(err); // (the object is garbage: collected later)
    }
    o->base.type = type;
    return MP_OBJ_FROM_PTR(o);
}

// update(buf, n=-1, /): on the interpreter's stack (SHA-512 only).
static mp_obj_t ota_ed_update_m(size_t n_args, const mp_obj_t *args) {
    ota_ed_obj_t *o = MP_OBJ_TO_PTR(args[0]);
    mp_obj_t a[2] = { MP_OBJ_NULL, MP_OBJ_NULL };
    ota_ed_bind_args(CALL_UPDATE, n_args - 1, 0, args + 1, a);
    mp_buffer_info_t bi;
    ota_ed_buffer(a[0], &bi);
    int err = ota_ed_update(o->state, bi.buf, bi.len, ota_ed_int(a[1]));
    if (err != 0) {
        ota_ed_raise(err);
    }
    return mp_const_none;
}

// verify() -> True, or the core's error.
static mp_obj_t ota_ed_verify_m(size_t n_args, const mp_obj_t *args) {
    ota_ed_obj_t *o = MP_OBJ_TO_PTR(args[0]);
    ota_ed_bind_args(CALL_VERIFY, n_args - 1, 0, args + 1, NULL);
    int err = ota_ed_on_stack(ota_ed_verify_any, o->state, NULL, 0, NULL, 0);
    if (err != 0) {
        ota_ed_raise(err);
    }
    return mp_const_true;
}

MP_DEFINE_CONST_FUN_OBJ_VAR(ota_ed_update_obj, 1, ota_ed_update_m);
MP_DEFINE_CONST_FUN_OBJ_VAR(ota_ed_verify_obj, 1, ota_ed_verify_m);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    #if defined(__thumb__)
    ota_ed_stack = m_malloc(OTA_ED_STACK); // first: a MemoryError leaves the globals as they were
    if (ota_ed_stack == NULL) {
        nlr_raise(mp_load_global(MP_QSTR_MemoryError));
    }
    #endif

    MP_DYNRUNTIME_INIT_ENTRY

    ota_ed_methods[0].key = MP_OBJ_NEW_QSTR(MP_QSTR_update);
    ota_ed_methods[0].value = MP_OBJ_FROM_PTR(&ota_ed_update_obj);
    ota_ed_methods[1].key = MP_OBJ_NEW_QSTR(MP_QSTR_verify);
    ota_ed_methods[1].value = MP_OBJ_FROM_PTR(&ota_ed_verify_obj);
    mp_obj_full_type_t *t = &ota_ed_type;
    t->base.type = (void *)&mp_type_type;
    t->flags = MP_TYPE_FLAG_NONE;
    t->name = MP_QSTR_Verifier;
    MP_OBJ_TYPE_SET_SLOT(t, make_new, ota_ed_make_new, 0);
    MP_OBJ_TYPE_SET_SLOT(t, locals_dict, (void *)&ota_ed_dict, 1);
    mp_store_global(MP_QSTR_Verifier, MP_OBJ_FROM_PTR(t));

    MP_DYNRUNTIME_INIT_EXIT
}
