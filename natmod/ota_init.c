// ota_native module entry: mpy_init and the type objects it fills.
//
// In its own small file, linked first (natmod/Makefile: SRC = ota_init.c ...), so that
// mpy_init stays within reach of the .mpy's 16-bit entry branch (docs/toolchain.md pitfall 6)
// without -fno-toplevel-reorder, which cost 132 bytes of armv6m code.
// The methods and constructor are in ota_native.c.
#include "py/dynruntime.h"

mp_obj_t ota_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args);

// Types and their method tables (bss, filled by mpy_init; no writable state).
// One array of method entries: BlobHasher [0, 3), DeltaReader [3, 6), InflateReader and
// PatchReader [3, 4) (readinto only).
mp_obj_full_type_t ota_types[4]; // BlobHasher, InflateReader, PatchReader, DeltaReader (= kind)
mp_map_elem_t ota_methods[6];
static MP_DEFINE_CONST_DICT_WITH_SIZE(ota_hasher_dict, &ota_methods[0], 3);
static MP_DEFINE_CONST_DICT_WITH_SIZE(ota_reader_dict, &ota_methods[3], 1);
static MP_DEFINE_CONST_DICT_WITH_SIZE(ota_delta_dict, &ota_methods[3], 3);
extern const void *const ota_method_funs[6]; // ota_native.c (mpy_ld relocates data only within an object)
static const mp_obj_dict_t *const ota_dicts[4] = { &ota_hasher_dict, &ota_reader_dict, &ota_reader_dict, &ota_delta_dict };

// Module entry (near the start of the first object).
mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY

    const qstr method_names[6] = {
        MP_QSTR_update, MP_QSTR_digest, MP_QSTR_hexdigest, MP_QSTR_readinto, MP_QSTR_digest, MP_QSTR_hexdigest,
    };
    const qstr type_names[4] = { MP_QSTR_BlobHasher, MP_QSTR_InflateReader, MP_QSTR_PatchReader, MP_QSTR_DeltaReader };
    const qstr format_names[3] = { MP_QSTR_RAW, MP_QSTR_ZLIB, MP_QSTR_GZIP };
    for (int i = 0; i < 6; i++) {
        ota_methods[i].key = MP_OBJ_NEW_QSTR(method_names[i]);
        ota_methods[i].value = MP_OBJ_FROM_PTR(ota_method_funs[i]);
    }
    for (int i = 0; i < 4; i++) {
        mp_obj_full_type_t *t = &ota_types[i];
        t->base.type = (void *)&mp_type_type;
        t->flags = MP_TYPE_FLAG_NONE;
        t->name = type_names[i];
        MP_OBJ_TYPE_SET_SLOT(t, make_new, ota_make_new, 0);
        MP_OBJ_TYPE_SET_SLOT(t, locals_dict, (void *)ota_dicts[i], 1);
        mp_store_global(type_names[i], MP_OBJ_FROM_PTR(t));
    }
    for (int i = 0; i < 3; i++) {
        mp_store_global(format_names[i], MP_OBJ_NEW_SMALL_INT(i + 1)); // RAW=1, ZLIB=2, GZIP=3
    }

    MP_DYNRUNTIME_INIT_EXIT
}
