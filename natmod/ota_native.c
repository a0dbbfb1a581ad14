// ota_native: MicroPython native module over the Rust core (natmod/src/lib.rs -> core/).
//
// The C file only converts: Python arguments -> slots (bound by the core), ints, pointers
// and sizes; core error codes -> the core's exception and message; and it calls the Python
// source / old-file methods for the Rust code. It checks nothing and writes no message.  All state lives in the Python object: a fixed
// header (below) followed by the Rust state, sized and initialised by ota_new().
// The API is pyshim/ota_native.pyi without the host-only make_patch/deflate.
// Module entry and type setup: ota_init.c.
#include "py/dynruntime.h"
#include "py/objarray.h"

// ---- Rust side (natmod/src/lib.rs) ----------------------------------------
// One entry point per operation for every kind (Rust dispatches on the kind ota_new
// recorded in the state). ota_new/digest return 0 or a core error code (> 0); ota_read
// (update for a hasher) and ota_bind return a count or slot, or minus an error code.
// Every check of an argument is the core's (ota_core::api): the glue only binds arguments
// with ota_bind, passes ints as ota_int() gives them and raises the codes it gets back.
intptr_t ota_bind(int call, intptr_t arg, uint8_t *bound);
int ota_new(void *ctx, int kind, mp_int_t size, mp_int_t format, mp_int_t wbits); // calls ota_alloc
intptr_t ota_read(void *st, void *io, uint8_t *buf, size_t len, mp_int_t n);
int ota_state_digest(void *st, uint8_t *out20);
const uint8_t *ota_error_message(int code, size_t *len);

// The calls of ota_core::api::Call: the four kinds of object (= the types), then the methods.
enum { KIND_HASHER, KIND_INFLATE, KIND_PATCH, KIND_DELTA, CALL_UPDATE, CALL_READINTO, CALL_DIGEST };
// The core error codes the glue raises itself (natmod's cargo test checks them against the core).
#define ERR_BAD_ARGUMENT 18 // ota_core::Error::BadArgument
#define ERR_INTERNAL 22 // ota_core::Error::Internal
#define ERR_ARG_COUNT 23 // ota_core::Error::ArgCount: codes below are ValueError, from here on TypeError
#define ERR_NOT_BUFFER 27 // ota_core::Error::NotBuffer
// An int for Rust (ota_core::api::Int): the value of a small int, else one of these.
#define OTA_ABSENT INTPTR_MIN // ota_core::api::ABSENT: not given; None from a readinto
#define OTA_NOT_INT (INTPTR_MIN + 1) // ota_core::api::NOT_INT
#define OTA_BIG INTPTR_MAX // ota_core::api::BIG: a long int
#define OTA_RAISED (INTPTR_MIN + 2) // natmod RAISED: the callback raised
#define OTA_BIND_END INTPTR_MIN // natmod BIND_END: ota_bind after the last argument

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
// The methods take any number of positional arguments: the core counts them (ota_bind), and
// MicroPython's runtime refuses keywords before they run (the core's NoKeywords text is its).
mp_obj_t ota_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args);
static mp_obj_t ota_update(size_t n_args, const mp_obj_t *args);
static mp_obj_t ota_readinto(size_t n_args, const mp_obj_t *args);
static mp_obj_t ota_digest(size_t n_args, const mp_obj_t *args);
static mp_obj_t ota_hexdigest(size_t n_args, const mp_obj_t *args);
MP_DEFINE_CONST_FUN_OBJ_VAR(ota_update_obj, 1, ota_update);
MP_DEFINE_CONST_FUN_OBJ_VAR(ota_readinto_obj, 1, ota_readinto);
MP_DEFINE_CONST_FUN_OBJ_VAR(ota_digest_obj, 1, ota_digest);
MP_DEFINE_CONST_FUN_OBJ_VAR(ota_hexdigest_obj, 1, ota_hexdigest);
// Method functions in the order of ota_init.c's ota_methods (update, digest, hexdigest; readinto, digest, hexdigest).
const void *const ota_method_funs[6] = {
    &ota_update_obj, &ota_digest_obj, &ota_hexdigest_obj, &ota_readinto_obj, &ota_digest_obj, &ota_hexdigest_obj,
};

// ---- errors and arguments -------------------------------------------------------

// The core's exception for `code` (ota_core::Error::exception: by the code's place around
// ERR_ARG_COUNT) with its fixed message (ota_core::Error::message): the one table.
static NORETURN void ota_raise_code(int code) {
    size_t len;
    const uint8_t *msg = ota_error_message(code, &len);
    qstr t = code < ERR_ARG_COUNT ? MP_QSTR_ValueError : MP_QSTR_TypeError;
    mp_raise_type_arg((const mp_obj_type_t *)mp_load_global(t), mp_obj_new_str((const char *)msg, len));
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

// Rust panic handler (the core does not panic on input): raise instead of hanging.
// The longjmp skips Rust frames without destructors; the object stays busy (unusable).
NORETURN void ota_panic(void) {
    ota_raise_code(ERR_INTERNAL);
}

// An int argument for Rust (ota_core::api::Int). mp_obj_get_int would silently truncate a
// long int to the machine word: long ints are OTA_BIG (out of every range the core accepts).
static mp_int_t ota_int(mp_obj_t o) {
    if (o == MP_OBJ_NULL) {
        return OTA_ABSENT;
    }
    if (mp_obj_is_small_int(o)) {
        return MP_OBJ_SMALL_INT_VALUE(o);
    }
    // A long int has the type of small ints (cheaper here than mp_obj_is_type(o, &mp_type_int)).
    return mp_obj_get_type(o) == mp_obj_get_type(MP_OBJ_NEW_SMALL_INT(0)) ? OTA_BIG : OTA_NOT_INT;
}

// Binds a call's arguments to their slots with the core's signature table (ota_bind), raising
// its error: args[0, n_args) are positional, then n_kw (name qstr, value) pairs follow.
static void ota_bind_args(int call, size_t n_args, size_t n_kw, const mp_obj_t *args, mp_obj_t *slot) {
    uint8_t bound = 0;
    for (size_t i = 0; i <= n_args + n_kw; i++) {
        intptr_t arg = i;
        mp_obj_t v = MP_OBJ_NULL;
        if (i == n_args + n_kw) {
            arg = OTA_BIND_END;
        } else if (i < n_args) {
            v = args[i];
        } else {
            const mp_obj_t *kv = args + n_args + 2 * (i - n_args);
            // The keyword names in ota_core::api::NAMES order (natmod's cargo test checks it).
            const qstr ota_arg_names[] = { MP_QSTR_source, MP_QSTR_old, MP_QSTR_size, MP_QSTR_new_size, MP_QSTR_format, MP_QSTR_wbits };
            intptr_t k = 0;
            while (k < 6 && kv[0] != MP_OBJ_NEW_QSTR(ota_arg_names[k])) {
                k++;
            }
            arg = -1 - k; // 6: a name the core does not know either
            v = kv[1];
        }
        intptr_t s = ota_bind(call, arg, &bound);
        if (s < 0) {
            ota_raise_code((int)-s);
        }
        if (v != MP_OBJ_NULL) {
            slot[s] = v;
        }
    }
}

// ---- callbacks from Rust: source.readinto / old.seek + old.readinto --------------

// Calls meth(view over buf[:n]) (after seek(pos) when seek != NULL) and returns its result as an
// ota_core::api::Int (None: OTA_ABSENT), which Rust checks; may raise.
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
    return ota_int(r == mp_const_none ? MP_OBJ_NULL : r);
}

// nlr buffer with room for runtime-specific extras (e.g. a pystack pointer).
typedef struct { nlr_buf_t nlr; void *spare[4]; ota_obj_t *o; } ota_nlr_t;

// Catches a Python exception from the callback (native NLR runtimes: unix x64,
// rp2), keeps it in o->exc and returns OTA_RAISED so that Rust returns Error::Source
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
    return OTA_RAISED;
}

// Source::read for Rust: what source.readinto returned (an ota_core::api::Int), or OTA_RAISED.
intptr_t ota_io_read(void *io, uint8_t *buf, size_t n) {
    ota_obj_t *o = io;
    return ota_io_call(o, o->src, NULL, 0, buf, n);
}

// ReadAt::read_at for Rust: old.seek(offset) unless already there, then old.readinto.
intptr_t ota_io_read_at(void *io, uint64_t offset, uint8_t *buf, size_t n) {
    ota_obj_t *o = io;
    intptr_t r = ota_io_call(o, o->old_read, offset == o->old_pos ? NULL : o->old_seek, offset, buf, n);
    o->old_pos = r < 0 ? (uint64_t)-1 : offset + (uint64_t)r; // (a bad count latches an error: no next read)
    return r;
}

// ---- constructors ----------------------------------------------------------------

// For ota_new: a new object (kept in *ctx) with a zeroed state block of `bytes` after its header.
void *ota_alloc(void *ctx, size_t bytes) {
    ota_obj_t *o = m_malloc(sizeof(ota_obj_t) + bytes);
    if (o == NULL) {
        // dynruntime's m_malloc returns NULL. Raised through the Rust frames of ota_new (no
        // destructors there, and the object is not made).
        nlr_raise(mp_load_global(MP_QSTR_MemoryError));
    }
    mp_fun_table.memset_(o, 0, sizeof(ota_obj_t) + bytes);
    *(ota_obj_t **)ctx = o;
    return o->state;
}

// BlobHasher(size) | InflateReader(source, format=ZLIB, wbits=15)
// | PatchReader(source, old, new_size) | DeltaReader(source, old, new_size, format=RAW, wbits=12)
// Arguments are bound to slots 0 source, 1 old, 2 size/new_size, 3 format, 4 wbits by the core
// (ota_bind), which also checks the ints, fills in the defaults and sizes the state (ota_new).
mp_obj_t ota_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    int kind = (const mp_obj_full_type_t *)type - ota_types;
    mp_obj_t a[5] = { MP_OBJ_NULL, MP_OBJ_NULL, MP_OBJ_NULL, MP_OBJ_NULL, MP_OBJ_NULL };
    ota_bind_args(kind, n_args, n_kw, args, a);
    ota_obj_t *o;
    int err = ota_new(&o, kind, ota_int(a[2]), ota_int(a[3]), ota_int(a[4]));
    if (err != 0) {
        ota_raise_code(err);
    }
    o->base.type = type; // the rest of the header is zero: exc MP_OBJ_NULL, busy 0
    if (kind != KIND_HASHER) {
        mp_load_method(a[0], MP_QSTR_readinto, o->src);
        if (kind != KIND_INFLATE) {
            mp_load_method(a[1], MP_QSTR_seek, o->old_seek);
            mp_load_method(a[1], MP_QSTR_readinto, o->old_read);
            o->old_pos = (uint64_t)-1; // unknown: the first read seeks
        }
        o->view = MP_OBJ_TO_PTR(mp_obj_new_bytearray_by_ref(0, o->state));
    }
    return MP_OBJ_FROM_PTR(o);
}

// ---- methods -----------------------------------------------------------------

// update / readinto (buf, n=-1) of self: the arguments bound by the core, buf's buffer checked
// (writable for readinto) and n applied by Rust; ota_read is update for a hasher.
static intptr_t ota_buf_call(int call, size_t n_args, const mp_obj_t *args) {
    ota_obj_t *o = MP_OBJ_TO_PTR(args[0]);
    mp_obj_t a[2] = { MP_OBJ_NULL, MP_OBJ_NULL };
    ota_bind_args(call, n_args - 1, 0, args + 1, a);
    mp_buffer_info_t bi;
    int w = call == CALL_READINTO;
    // A str has a (read) buffer on MicroPython only: refused as CPython does.
    if (!mp_get_buffer(a[0], &bi, w ? MP_BUFFER_WRITE : MP_BUFFER_READ) || (!w && mp_obj_is_str(a[0]))) {
        ota_raise_code(ERR_NOT_BUFFER);
    }
    ota_enter(o);
    intptr_t r = ota_read(o->state, o, bi.buf, bi.len, ota_int(a[1]));
    ota_check(o, r);
    return r;
}

// BlobHasher.update(buf, n=-1)
static mp_obj_t ota_update(size_t n_args, const mp_obj_t *args) {
    ota_buf_call(CALL_UPDATE, n_args, args);
    return mp_const_none;
}

// InflateReader / PatchReader / DeltaReader .readinto(buf, n=-1) -> count, 0 at the end.
static mp_obj_t ota_readinto(size_t n_args, const mp_obj_t *args) {
    return mp_obj_new_int(ota_buf_call(CALL_READINTO, n_args, args));
}

// digest() (hex = 0) or hexdigest() of a BlobHasher or a finished DeltaReader (no arguments:
// the core counts them).
static mp_obj_t ota_digest_any(size_t n_args, const mp_obj_t *args, int hex) {
    ota_obj_t *o = MP_OBJ_TO_PTR(args[0]);
    ota_bind_args(CALL_DIGEST, n_args - 1, 0, args + 1, NULL);
    if (o->busy) {
        ota_raise_code(ERR_BAD_ARGUMENT); // called from a callback of this object, or after a failure
    }
    uint8_t d[20];
    char h[40];
    int err = ota_state_digest(o->state, d);
    if (err != 0) {
        ota_raise_code(err);
    }
    if (!hex) {
        return mp_obj_new_bytes(d, 20);
    }
    for (int i = 0; i < 20; i++) {
        h[2 * i] = "0123456789abcdef"[d[i] >> 4];
        h[2 * i + 1] = "0123456789abcdef"[d[i] & 15];
    }
    return mp_obj_new_str(h, 40);
}

static mp_obj_t ota_digest(size_t n_args, const mp_obj_t *args) {
    return ota_digest_any(n_args, args, 0);
}

static mp_obj_t ota_hexdigest(size_t n_args, const mp_obj_t *args) {
    return ota_digest_any(n_args, args, 1);
}
