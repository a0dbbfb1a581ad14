// ota_native: MicroPython native module over the Rust core (natmod/src/lib.rs -> core/).
//
// The C file only converts: Python arguments -> pointers and sizes, core error
// codes -> ValueError(message), and it calls the Python source / old-file
// methods for the Rust code.  All state lives in the Python object: a fixed
// header (below) followed by the Rust state, sized by ota_state_size().
// The API is pyshim/ota_native.pyi without the host-only make_patch/deflate.
// Module entry and type setup: ota_init.c.
#include "py/dynruntime.h"
#include "py/objarray.h"

// ---- Rust side (natmod/src/lib.rs) ----------------------------------------
// One entry point per operation for every kind (Rust dispatches on the kind ota_init
// recorded in the state). ota_init/update/digest return 0 or a core error code (> 0);
// ota_read returns the byte count (>= 0) or minus an error code.
size_t ota_state_size(int kind, mp_int_t wbits);
int ota_init(void *st, int kind, uint64_t size, mp_int_t format, mp_int_t wbits);
intptr_t ota_read(void *st, void *io, uint8_t *out, size_t n);
int ota_state_digest(void *st, uint8_t *out20);
int ota_hasher_update(void *st, const uint8_t *p, size_t n);
const uint8_t *ota_error_message(int code, size_t *len);

enum { KIND_HASHER, KIND_INFLATE, KIND_PATCH, KIND_DELTA };
#define ERR_BAD_ARGUMENT (18) // ota_core::Error::BadArgument
#define OTA_INT_LIMIT ((mp_int_t)1 << 30) // sizes are below 1 GiB: the same limit on every binding

// One object type for all four classes: header + Rust state.
typedef struct _ota_obj_t {
    mp_obj_base_t base;
    mp_obj_t src[2];       // bound source.readinto (method, self)
    mp_obj_t old_seek[2];  // bound old.seek
    mp_obj_t old_read[2];  // bound old.readinto
    mp_obj_array_t *view;  // bytearray aliasing the buffer a callback fills (made once, retargeted)
    mp_obj_t exc;          // exception raised by a callback, re-raised once Rust has returned
    uint64_t old_pos;      // where `old` is positioned (seek skipped when reads are sequential)
    uint8_t busy;          // set while Rust runs; stays set if an exception escaped (object unusable)
    uint64_t state[];      // Rust state, 8-byte aligned
} ota_obj_t;

// The types (indexed by kind), their method tables and mpy_init are in ota_init.c (linked first).
extern mp_obj_full_type_t ota_types[4];

// Constructor and methods (ota_init.c reaches the methods through ota_method_funs below).
mp_obj_t ota_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args);
static mp_obj_t ota_update(size_t n_args, const mp_obj_t *args);
static mp_obj_t ota_readinto(size_t n_args, const mp_obj_t *args);
static mp_obj_t ota_digest(mp_obj_t self_in);
static mp_obj_t ota_hexdigest(mp_obj_t self_in);
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(ota_update_obj, 2, 3, ota_update);
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(ota_readinto_obj, 2, 3, ota_readinto);
MP_DEFINE_CONST_FUN_OBJ_1(ota_digest_obj, ota_digest);
MP_DEFINE_CONST_FUN_OBJ_1(ota_hexdigest_obj, ota_hexdigest);
// Method functions in the order of ota_init.c's ota_methods (update, digest, hexdigest; readinto, digest, hexdigest).
const void *const ota_method_funs[6] = {
    &ota_update_obj, &ota_digest_obj, &ota_hexdigest_obj, &ota_readinto_obj, &ota_digest_obj, &ota_hexdigest_obj,
};

// ---- errors ------------------------------------------------------------------

// ValueError with the core's fixed message for `code` (one table: ota_core::Error::message).
static NORETURN void ota_raise_code(int code) {
    size_t len;
    const uint8_t *msg = ota_error_message(code, &len);
    mp_raise_type_arg(&mp_type_ValueError, mp_obj_new_str((const char *)msg, len));
}

// After a Rust call: re-raise a callback's exception, else map a core error.
static void ota_check(ota_obj_t *o, intptr_t ret) {
    o->busy = 0;
    if (o->exc != MP_OBJ_NULL) {
        mp_obj_t exc = o->exc;
        o->exc = MP_OBJ_NULL;
        nlr_raise(exc);
    }
    if (ret < 0) {
        ota_raise_code((int)-ret);
    }
}

// Marks the object busy for the duration of a Rust call; refuses re-entry and
// objects left inconsistent by an exception that escaped (see ota_io_call).
static void ota_enter(ota_obj_t *o) {
    if (o->busy) {
        ota_raise_code(ERR_BAD_ARGUMENT);
    }
    o->busy = 1;
}

static mp_int_t ota_int_or(mp_obj_t o, mp_int_t dflt);

static mp_int_t ota_int_arg(size_t n_args, const mp_obj_t *args, size_t i, mp_int_t dflt) {
    return ota_int_or(i < n_args ? args[i] : MP_OBJ_NULL, dflt);
}

// Rust panic handler (the core does not panic on input): raise instead of hanging.
// The longjmp skips Rust frames without destructors; the object stays busy (unusable).
NORETURN void ota_panic(void) {
    mp_raise_msg(&mp_type_RuntimeError, "internal error");
}

// ---- callbacks from Rust: source.readinto / old.seek + old.readinto --------------

// Calls meth(view over buf[:n]) (after seek(pos) when seek != NULL); may raise.
static intptr_t ota_io_call_raw(ota_obj_t *o, mp_obj_t *meth, mp_obj_t *seek, uint64_t pos, uint8_t *buf, size_t n) {
    mp_obj_t a[3];
    if (seek != NULL) {
        a[0] = seek[0];
        a[1] = seek[1];
        a[2] = mp_obj_new_int_from_uint((mp_uint_t)pos);
        mp_fun_table.call_method_n_kw(1, 0, a);
    }
    // Retarget the one bytearray at the Rust buffer: nothing allocated per chunk.
    o->view->items = buf;
    o->view->len = n;
    a[0] = meth[0];
    a[1] = meth[1];
    a[2] = MP_OBJ_FROM_PTR(o->view);
    mp_obj_t r = mp_fun_table.call_method_n_kw(1, 0, a);
    o->view->len = 0;
    if (r == mp_const_none) {
        return 0; // None: end of input (as in the .pyi)
    }
    mp_int_t k = mp_obj_get_int(r);
    if (k < 0 || (size_t)k > n) {
        mp_raise_ValueError("bad readinto count");
    }
    return k;
}

// nlr buffer with room for runtime-specific extras (e.g. a pystack pointer).
typedef struct { nlr_buf_t nlr; void *spare[4]; ota_obj_t *o; } ota_nlr_t;

// Catches a Python exception from the callback (native NLR runtimes: unix x64,
// rp2), keeps it in o->exc and returns -1 so that Rust returns Error::Source
// and the glue re-raises it.  On a setjmp-NLR runtime (mp_fun_table.setjmp_ set)
// the exception unwinds through the Rust frames instead: acceptable because the
// no_std core has no destructors; o->busy then stays set and the object refuses
// further use.
static intptr_t ota_io_call(ota_obj_t *o, mp_obj_t *meth, mp_obj_t *seek, uint64_t pos, uint8_t *buf, size_t n) {
    if (mp_fun_table.setjmp_ != NULL) {
        return ota_io_call_raw(o, meth, seek, pos, buf, n);
    }
    ota_nlr_t h;
    h.o = o;
    if (mp_fun_table.nlr_push(&h.nlr) == 0) {
        intptr_t r = ota_io_call_raw(o, meth, seek, pos, buf, n);
        mp_fun_table.nlr_pop();
        return r;
    }
    // Read through `h` (memory), not through locals the longjmp may have clobbered.
    h.o->exc = MP_OBJ_FROM_PTR(h.nlr.ret_val);
    return -1;
}

// Source::read for Rust: >= 0 bytes read (0 = end), -1 = Python exception pending.
intptr_t ota_io_read(void *io, uint8_t *buf, size_t n) {
    ota_obj_t *o = io;
    return ota_io_call(o, o->src, NULL, 0, buf, n);
}

// ReadAt::read_at for Rust: old.seek(offset) unless already there, then old.readinto.
intptr_t ota_io_read_at(void *io, uint64_t offset, uint8_t *buf, size_t n) {
    ota_obj_t *o = io;
    intptr_t r = ota_io_call(o, o->old_read, offset == o->old_pos ? NULL : o->old_seek, offset, buf, n);
    o->old_pos = r < 0 ? (uint64_t)-1 : offset + (uint64_t)r;
    return r;
}

// ---- constructors ----------------------------------------------------------------

// An int argument. mp_obj_get_int would silently truncate a big int to the machine word, so
// only small ints are taken: every size, count, format and wbits of the API is below 2**30.
static mp_int_t ota_int_or(mp_obj_t o, mp_int_t dflt) {
    if (o == MP_OBJ_NULL) {
        return dflt;
    }
    mp_int_t v = mp_obj_is_small_int(o) ? MP_OBJ_SMALL_INT_VALUE(o) : OTA_INT_LIMIT;
    if (v >= OTA_INT_LIMIT || v < -OTA_INT_LIMIT) {
        ota_raise_code(ERR_BAD_ARGUMENT);
    }
    return v;
}

// BlobHasher(size) | InflateReader(source, format=ZLIB, wbits=15)
// | PatchReader(source, old, new_size) | DeltaReader(source, old, new_size, format=RAW, wbits=12)
// Arguments go to slots 0 source, 1 old, 2 size/new_size, 3 format, 4 wbits (positional, or by
// keyword; a positional argument wins over a keyword for the same slot, unknown keywords are ignored).
mp_obj_t ota_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    int kind = (const mp_obj_full_type_t *)type - ota_types;
    static const uint8_t n_req[] = { 1, 1, 3, 3 };
    static const uint8_t n_max[] = { 1, 3, 3, 5 };
    static const uint8_t slot_of[4][5] = { { 2 }, { 0, 3, 4 }, { 0, 1, 2 }, { 0, 1, 2, 3, 4 } };
    if (n_args + n_kw < n_req[kind] || n_args + n_kw > n_max[kind]) {
        mp_raise_TypeError("wrong number of arguments");
    }
    mp_obj_t a[5] = { MP_OBJ_NULL, MP_OBJ_NULL, MP_OBJ_NULL, MP_OBJ_NULL, MP_OBJ_NULL };
    qstr names[5] = { MP_QSTR_source, MP_QSTR_old, kind == KIND_HASHER ? MP_QSTR_size : MP_QSTR_new_size,
                      MP_QSTR_format, MP_QSTR_wbits };
    for (size_t i = 0; i < n_kw; i++) {
        for (size_t j = 0; j < n_max[kind]; j++) {
            int k = slot_of[kind][j];
            if (args[n_args + 2 * i] == MP_OBJ_NEW_QSTR(names[k])) {
                a[k] = args[n_args + 2 * i + 1];
            }
        }
    }
    for (size_t i = 0; i < n_args; i++) {
        a[slot_of[kind][i]] = args[i];
    }
    mp_int_t size = ota_int_or(a[2], 0);
    mp_int_t format = ota_int_or(a[3], kind == KIND_INFLATE ? 2 : 1);
    mp_int_t wbits = ota_int_or(a[4], kind == KIND_INFLATE ? 15 : 12);
    // Required: hasher: size; inflate: source; patch and delta: source, old, new_size.
    if (size < 0 || (kind != KIND_INFLATE && a[2] == MP_OBJ_NULL)
        || (kind != KIND_HASHER && (a[0] == MP_OBJ_NULL || (kind != KIND_INFLATE && a[1] == MP_OBJ_NULL)))) {
        ota_raise_code(ERR_BAD_ARGUMENT);
    }
    size_t state_size = ota_state_size(kind, wbits);

    // Header + Rust state in one GC block; zeroed before the in-place init.
    ota_obj_t *o = m_malloc(sizeof(ota_obj_t) + state_size);
    if (o == NULL) {
        nlr_raise(mp_load_global(MP_QSTR_MemoryError)); // dynruntime's m_malloc returns NULL
    }
    mp_fun_table.memset_(o, 0, sizeof(ota_obj_t) + state_size);
    o->base.type = type;
    o->exc = MP_OBJ_NULL;
    if (kind != KIND_HASHER) {
        mp_load_method(a[0], MP_QSTR_readinto, o->src);
        if (kind != KIND_INFLATE) {
            mp_load_method(a[1], MP_QSTR_seek, o->old_seek);
            mp_load_method(a[1], MP_QSTR_readinto, o->old_read);
            o->old_pos = (uint64_t)-1; // unknown: the first read seeks
        }
        o->view = MP_OBJ_TO_PTR(mp_obj_new_bytearray_by_ref(0, o->state));
    }
    int err = ota_init(o->state, kind, (uint64_t)size, format, wbits);
    if (err != 0) {
        ota_raise_code(err);
    }
    return MP_OBJ_FROM_PTR(o);
}

// ---- methods -----------------------------------------------------------------

// Writable or readable buffer of args[1], limited to args[2] bytes when given and >= 0.
static void ota_buf_arg(size_t n_args, const mp_obj_t *args, mp_buffer_info_t *bi, mp_uint_t flags) {
    mp_get_buffer_raise(args[1], bi, flags);
    mp_int_t n = ota_int_arg(n_args, args, 2, -1);
    if (n >= 0 && (size_t)n < bi->len) {
        bi->len = n;
    }
}

// BlobHasher.update(buf, n=-1)
static mp_obj_t ota_update(size_t n_args, const mp_obj_t *args) {
    ota_obj_t *o = MP_OBJ_TO_PTR(args[0]);
    mp_buffer_info_t bi;
    ota_buf_arg(n_args, args, &bi, MP_BUFFER_READ);
    int err = ota_hasher_update(o->state, bi.buf, bi.len);
    if (err != 0) {
        ota_raise_code(err);
    }
    return mp_const_none;
}

// InflateReader / PatchReader / DeltaReader .readinto(buf, n=-1) -> count, 0 at the end.
static mp_obj_t ota_readinto(size_t n_args, const mp_obj_t *args) {
    ota_obj_t *o = MP_OBJ_TO_PTR(args[0]);
    mp_buffer_info_t bi;
    ota_buf_arg(n_args, args, &bi, MP_BUFFER_WRITE);
    ota_enter(o);
    intptr_t r = ota_read(o->state, o, bi.buf, bi.len);
    ota_check(o, r);
    return mp_obj_new_int(r);
}

// 20-byte digest of a BlobHasher or a finished DeltaReader.
static void ota_digest_into(mp_obj_t self_in, uint8_t *out) {
    ota_obj_t *o = MP_OBJ_TO_PTR(self_in);
    if (o->busy) {
        ota_raise_code(ERR_BAD_ARGUMENT); // called from a callback of this object, or after a failure
    }
    int err = ota_state_digest(o->state, out);
    if (err != 0) {
        ota_raise_code(err);
    }
}

static mp_obj_t ota_digest(mp_obj_t self_in) {
    uint8_t d[20];
    ota_digest_into(self_in, d);
    return mp_obj_new_bytes(d, 20);
}

static mp_obj_t ota_hexdigest(mp_obj_t self_in) {
    uint8_t d[20];
    char hex[40];
    ota_digest_into(self_in, d);
    for (int i = 0; i < 20; i++) {
        hex[2 * i] = "0123456789abcdef"[d[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[d[i] & 15];
    }
    return mp_obj_new_str(hex, 40);
}

// ---- C library functions the Rust and C code may call (TOOLCHAIN.md pitfall 4) ----------
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
