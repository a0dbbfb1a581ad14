// ota_native module entry: mpy_init and the type objects it fills.
//
// In its own small file, linked first (natmod/Makefile: SRC = ota_init.c ...), so that
// mpy_init stays within reach of the .mpy's 16-bit entry branch (TOOLCHAIN.md pitfall 6)
// without -fno-toplevel-reorder, which cost 132 bytes of armv6m code.
// The methods and constructor are in ota_native.c.
#include "py/dynruntime.h"

mp_obj_t ota_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args);
extern const mp_obj_fun_builtin_var_t ota_update_obj;
extern const mp_obj_fun_builtin_var_t ota_readinto_obj;
extern const mp_obj_fun_builtin_fixed_t ota_digest_obj;
extern const mp_obj_fun_builtin_fixed_t ota_hexdigest_obj;

// Types and their method tables (bss, filled by mpy_init; no writable state).
mp_obj_full_type_t ota_types[4]; // BlobHasher, InflateReader, PatchReader, DeltaReader (= kind)
mp_map_elem_t ota_hasher_table[3];
mp_map_elem_t ota_reader_table[1];
mp_map_elem_t ota_delta_table[3];
static MP_DEFINE_CONST_DICT(ota_hasher_dict, ota_hasher_table);
static MP_DEFINE_CONST_DICT(ota_reader_dict, ota_reader_table);
static MP_DEFINE_CONST_DICT(ota_delta_dict, ota_delta_table);

static void ota_init_type(mp_obj_full_type_t *t, qstr name, void *dict) {
    t->base.type = (void *)&mp_type_type;
    t->flags = MP_TYPE_FLAG_NONE;
    t->name = name;
    MP_OBJ_TYPE_SET_SLOT(t, make_new, ota_make_new, 0);
    MP_OBJ_TYPE_SET_SLOT(t, locals_dict, dict, 1);
    mp_store_global(name, MP_OBJ_FROM_PTR(t));
}

#define ELEM(q, o) ((mp_map_elem_t) { MP_OBJ_NEW_QSTR(q), MP_OBJ_FROM_PTR(o) })

// Module entry (near the start of the first object: only ota_init_type precedes it).
mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY

    ota_hasher_table[0] = ELEM(MP_QSTR_update, &ota_update_obj);
    ota_hasher_table[1] = ELEM(MP_QSTR_digest, &ota_digest_obj);
    ota_hasher_table[2] = ELEM(MP_QSTR_hexdigest, &ota_hexdigest_obj);
    ota_reader_table[0] = ELEM(MP_QSTR_readinto, &ota_readinto_obj);
    ota_delta_table[0] = ELEM(MP_QSTR_readinto, &ota_readinto_obj);
    ota_delta_table[1] = ELEM(MP_QSTR_digest, &ota_digest_obj);
    ota_delta_table[2] = ELEM(MP_QSTR_hexdigest, &ota_hexdigest_obj);
    ota_init_type(&ota_types[0], MP_QSTR_BlobHasher, (void *)&ota_hasher_dict);
    ota_init_type(&ota_types[1], MP_QSTR_InflateReader, (void *)&ota_reader_dict);
    ota_init_type(&ota_types[2], MP_QSTR_PatchReader, (void *)&ota_reader_dict);
    ota_init_type(&ota_types[3], MP_QSTR_DeltaReader, (void *)&ota_delta_dict);
    mp_store_global(MP_QSTR_RAW, MP_OBJ_NEW_SMALL_INT(1));
    mp_store_global(MP_QSTR_ZLIB, MP_OBJ_NEW_SMALL_INT(2));
    mp_store_global(MP_QSTR_GZIP, MP_OBJ_NEW_SMALL_INT(3));

    MP_DYNRUNTIME_INIT_EXIT
}
