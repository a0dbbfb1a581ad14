"""Load an armv6m native .mpy into an emulated Cortex-M0+ (unicorn) the way MicroPython does.

What is MicroPython's here, and what is faked:
- The .mpy is parsed and relocated exactly as py/persistentcode.c does it (header, qstr table,
  native viper raw code, scope flags, rodata/bss sizes, relocation stream: text/rodata/bss bases,
  qstr table, obj table, &mp_fun_table and mp_fun_table[i] entries). The machine code executed is
  the .mpy's text after relocation, nothing else.
- mp_fun_table (py/nativeglue.h, 1.23 layout) is a real table in emulated SRAM. memset_/memmove_
  point at real ARMv6-M code (newlib's thumb/v6-m memset/memmove, linked here at a fixed
  address), so their instructions and cycles are counted like the rest. Every other entry points
  at a hook address (a `bx lr` in a hook page): a Python handler does what MicroPython's runtime
  would do (object model in REPR_A: small ints (v<<1)|1, qstrs (q<<3)|2, immediates None=6,
  False=0xe, True=0x1e; heap objects are mp_obj_base_t structs in emulated memory).
- NLR (native, not setjmp: mp_fun_table.setjmp_ is NULL as on rp2): nlr_push saves the caller's
  r4-r11/sp/lr; an exception raised while a frame is pushed long-jumps there with nlr.ret_val set.
- Calls from Python into the module follow MicroPython: Type(...) calls the type's make_new slot,
  obj.method(...) looks the name up in the type's locals_dict and calls the builtin function object
  (fun_builtin_0..3 / fun_builtin_var) with MicroPython's C calling convention.

Every basic block executed is decoded once and must be ARMv6-M (16-bit Thumb, plus BL, DMB, DSB,
ISB, MRS, MSR, UDF.W as 32-bit forms); instructions and Cortex-M0+ cycles (rp2040js's timing table,
see `_cycles16`) are counted per block.
"""

import gc
import os
import struct
import subprocess
import sys
import weakref

from unicorn import (UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_MODE_MCLASS, UC_MODE_THUMB, Uc,
                     UcError)
from unicorn import arm_const as A

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MPY_DIR = os.path.join(ROOT, "build", "mpy_cross_v6_3-1.1.1", "micropython")
EMU_BUILD = os.path.join(ROOT, "build", "emu")

# ---- memory map (RP2040 SRAM is 0x20000000..0x20042000, 264 KiB) -----------------------------
SRAM = 0x20000000
SRAM_SIZE = 0x42000
STACK_TOP = SRAM + SRAM_SIZE
STACK_SIZE = 0x4000  # 16 KiB reserved (and painted to measure use)
FUN_TABLE = SRAM + 0x000  # mp_fun_table, 87 words
QSTR_TABLE = SRAM + 0x200  # uint16 qstr ids of the .mpy
MEMOPS = SRAM + 0x400  # newlib memmove/memset/memcpy (ARMv6-M)
MEMOPS_MAX = 0x400
TEXT = SRAM + 0x800  # the module's code (MicroPython: m_new'd exec memory)
HOOKS = 0x30000000  # one `bx lr` per mp_fun_table entry + magic addresses
RET_MAGIC = HOOKS + 0xF00  # return address of calls made from Python
HOST = 0x31000000  # objects made by the fake runtime (types, dicts, bytes, ...)
HOST_SIZE = 0x1000000

# ---- MicroPython constants (1.23, ABI 6.3) -------------------------------------------------
MPY_VERSION = 6
MPY_SUB_VERSION = 3
MP_NATIVE_ARCH_ARMV6M = 4
MP_CODE_BYTECODE = 2
MP_CODE_NATIVE_VIPER = 4
MP_SCOPE_FLAG_VIPERRELOC = 0x10
MP_SCOPE_FLAG_VIPERRODATA = 0x20
MP_SCOPE_FLAG_VIPERBSS = 0x40
MP_NATIVE_TYPE_OBJ, MP_NATIVE_TYPE_BOOL, MP_NATIVE_TYPE_INT, MP_NATIVE_TYPE_UINT = 0, 1, 2, 3
MP_NATIVE_TYPE_QSTR = 8
MP_BUFFER_RAISE_IF_UNSUPPORTED = 4
NONE, FALSE, TRUE = 0x06, 0x0E, 0x1E
NULL = 0

FUN_TABLE_NAMES = [
    "const_none", "const_false", "const_true", "native_from_obj", "native_to_obj",
    "swap_globals", "load_name", "load_global", "load_build_class", "load_attr", "load_method",
    "load_super_method", "store_name", "store_global", "store_attr", "obj_subscr", "obj_is_true",
    "unary_op", "binary_op", "new_tuple", "new_list", "new_dict", "new_set", "set_store",
    "list_append", "dict_store", "make_function_from_proto_fun", "call_function_n_kw",
    "call_method_n_kw", "call_method_n_kw_var", "getiter", "iternext", "nlr_push", "nlr_pop",
    "raise", "import_name", "import_from", "import_all", "new_slice", "unpack_sequence",
    "unpack_ex", "delete_name", "delete_global", "new_closure", "arg_check_num_sig",
    "setup_code_state_native", "small_int_floor_divide", "small_int_modulo", "yield_from",
    "setjmp_",
    # dynamic runtime entries, index 50
    "memset_", "memmove_", "realloc_", "printf_", "vprintf_", "raise_msg", "obj_get_type",
    "obj_new_str", "obj_new_bytes", "obj_new_bytearray_by_ref", "obj_new_float_from_f",
    "obj_new_float_from_d", "obj_get_float_to_f", "obj_get_float_to_d", "load_method_maybe",
    "get_buffer", "get_stream_raise", "arg_parse_all", "arg_parse_all_kw_array",
    "binary_get_size", "binary_get_val_array", "binary_set_val_array", "plat_print",
    # index 73: types and objects referenced by mpy_ld.py
    "type_type", "type_str", "type_list", "type_dict", "type_fun_builtin_0",
    "type_fun_builtin_1", "type_fun_builtin_2", "type_fun_builtin_3", "type_fun_builtin_var",
    "type_Exception", "stream_read_obj", "stream_readinto_obj",
    "stream_unbuffered_readline_obj", "stream_write_obj",
]
assert FUN_TABLE_NAMES.index("memset_") == 50 and FUN_TABLE_NAMES.index("type_type") == 73
FT = {n: i for i, n in enumerate(FUN_TABLE_NAMES)}


def static_qstrs():
    """MicroPython's fixed static qstr list (qstr id = index + 1), from the sdist's makeqstrdata."""
    sys.path.insert(0, os.path.join(MPY_DIR, "py"))
    try:
        import makeqstrdata
    finally:
        sys.path.pop(0)
    return list(makeqstrdata.static_qstr_list)


class MpyError(Exception):
    pass


# ---- .mpy parsing (py/persistentcode.c: mp_raw_code_load / load_raw_code) ----------------------

class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def bytes(self, n):
        b = self.data[self.pos:self.pos + n]
        if len(b) != n:
            raise MpyError("truncated .mpy")
        self.pos += n
        return b

    def uint(self):
        v = 0
        while True:
            b = self.byte()
            v = (v << 7) | (b & 0x7F)
            if not b & 0x80:
                return v


class MpyFile:
    """The parts of a native .mpy, in file order. Relocations stay a byte stream (applied later)."""

    def __init__(self, data):
        r = Reader(data)
        hdr = r.bytes(4)
        if hdr[0] != ord("M") or hdr[1] != MPY_VERSION:
            raise MpyError("not a v6 .mpy: %r" % hdr)
        self.arch = hdr[2] >> 2
        self.sub_version = hdr[2] & 3
        self.small_int_bits = hdr[3]
        if self.arch != MP_NATIVE_ARCH_ARMV6M or self.sub_version != MPY_SUB_VERSION:
            raise MpyError("not an armv6m .mpy ABI 6.3 (arch %d sub %d)" % (self.arch, self.sub_version))
        if self.small_int_bits > 31:
            raise MpyError("small int bits %d" % self.small_int_bits)
        n_qstr, n_obj = r.uint(), r.uint()
        self.qstrs = []  # ('static', id) or ('str', text)
        for _ in range(n_qstr):
            ln = r.uint()
            if ln & 1:
                self.qstrs.append(("static", ln >> 1))
            else:
                s = r.bytes(ln >> 1).decode()
                r.byte()  # NUL
                self.qstrs.append(("str", s))
        if n_obj:
            raise MpyError("object table not supported (mpy_ld never emits one)")
        self.n_obj = n_obj
        kind_len = r.uint()
        self.kind = (kind_len & 3) + MP_CODE_BYTECODE
        self.has_children = bool(kind_len & 4)
        if self.kind != MP_CODE_NATIVE_VIPER or self.has_children:
            raise MpyError("top-level raw code is not a childless native viper function")
        self.text_offset = r.pos
        self.text = r.bytes(kind_len >> 3)
        self.scope_flags = r.uint()
        self.rodata_size = r.uint() if self.scope_flags & MP_SCOPE_FLAG_VIPERRODATA else 0
        self.bss_size = r.uint() if self.scope_flags & MP_SCOPE_FLAG_VIPERBSS else 0
        self.rodata = r.bytes(self.rodata_size)
        self.reloc_offset = r.pos
        self.reloc_stream = data[r.pos:]
        self.size = len(data)
        # Walk the relocation stream once to check it and to know its length.
        self.relocs = list(self.iter_relocs())
        self.reloc_size = self._reloc_len

    def iter_relocs(self):
        """(base 'text'|'rodata', word index, dest, n) as mp_native_relocate reads them."""
        r = Reader(self.reloc_stream)
        base = idx = None
        while True:
            op = r.byte()
            if op == 0xFF:
                break
            if op & 1:
                addr = r.uint()
                base, idx = ("rodata" if addr & 1 else "text"), addr >> 1
            if base is None:
                raise MpyError("relocation without a location")
            op >>= 1
            n = 1
            if op <= 5:
                if op & 1:
                    n = r.uint()
                dest = ("text", "rodata", "bss")[op >> 1]
            elif op == 6:
                dest = "qstr_table"
            elif op == 7:
                dest = "obj_table"
            elif op == 8:
                dest = "mp_fun_table"
            else:
                dest = ("fun", op - 9)
            yield base, idx, dest, n
            idx += n
        self._reloc_len = r.pos


# ---- ARMv6-M decoding: ISA check and rp2040js cycle table -------------------------------------

def is_wide(hw):
    return (hw >> 11) in (0b11101, 0b11110, 0b11111)


def check_wide(hw1, hw2):
    """Name of an ARMv6-M 32-bit instruction, or None when it is not one."""
    if hw1 & 0xF800 == 0xF000 and hw2 & 0xD000 == 0xD000:
        return "bl"
    if hw1 & 0xFFF0 == 0xF380 and hw2 & 0xFF00 == 0x8800:
        return "msr"
    if hw1 == 0xF3EF and hw2 & 0xF000 == 0x8000:
        return "mrs"
    if hw1 == 0xF3BF and hw2 & 0xFFF0 in (0x8F40, 0x8F50, 0x8F60):
        return "barrier"
    if hw1 & 0xFFF0 == 0xF7F0 and hw2 & 0xF000 == 0xA000:
        return "udf.w"
    return None


def check_narrow(hw):
    """None when the 16-bit encoding is ARMv6-M, else why not."""
    if hw & 0xF500 == 0xB100:
        return "cbz/cbnz (ARMv7-M)"
    if hw & 0xFF00 == 0xBF00 and hw & 0xF:
        return "it (ARMv7-M)"
    if hw & 0xFFF7 == 0xB650:
        return "setend"
    if hw & 0xFF00 in (0xB800, 0xB700) or hw & 0xFFC0 == 0xBA80:
        return "unallocated"
    if hw & 0xFFE8 == 0xB660 and hw & 0x7 != 2:
        return "cps with a/f"
    return None


def _cycles16(hw):
    """Cortex-M0+ cycles of one 16-bit instruction as rp2040js 1.4.1 counts them (SRAM, no wait
    states). Conditional branches return 1 (+1 when taken, added by the tracer)."""
    if hw >> 11 in (0b01101, 0b10011, 0b01001, 0b01111, 0b10001, 0b01100, 0b10010, 0b01110,
                    0b10000):  # LDR/STR/LDRB/STRB/LDRH/STRH imm, sp, literal
        return 2
    if hw >> 12 == 0b0101:  # LDR/STR (register) family incl. LDRSB/LDRSH
        return 2
    if hw >> 11 in (0b11001, 0b11000):  # LDMIA / STMIA
        return 1 + bin(hw & 0xFF).count("1")
    if hw >> 9 == 0b1011010:  # PUSH (LR not counted by rp2040js)
        return 1 + bin(hw & 0xFF).count("1")
    if hw >> 9 == 0b1011110:  # POP
        return 1 + bin(hw & 0xFF).count("1") + (2 if hw & 0x100 else 0)
    if hw >> 11 == 0b11100:  # B
        return 2
    if hw >> 7 in (0b010001111, 0b010001110) and hw & 7 == 0:  # BLX / BX
        return 2
    if hw >> 8 in (0b01000100, 0b01000110) and ((hw >> 4) & 8 | hw & 7) == 15:  # ADD/MOV pc
        return 2
    if hw in (0xBF20, 0xBF30):  # WFE / WFI
        return 2
    return 1


def is_bcond(hw):
    return hw >> 12 == 0b1101 and (hw >> 8) & 0xF < 0xE


class IsaError(AssertionError):
    pass


def decode_block(code, addr):
    """(n_instructions, static cycles, address after a final conditional branch or None)."""
    n = cyc = 0
    i = 0
    last_bcond = None
    while i < len(code):
        hw = code[i] | code[i + 1] << 8
        if is_wide(hw):
            hw2 = code[i + 2] | code[i + 3] << 8
            kind = check_wide(hw, hw2)
            if kind is None:
                raise IsaError("non-ARMv6-M instruction %04x %04x at 0x%08x" % (hw, hw2, addr + i))
            cyc += 3
            i += 4
            last_bcond = None
        else:
            why = check_narrow(hw)
            if why:
                raise IsaError("non-ARMv6-M instruction %04x (%s) at 0x%08x" % (hw, why, addr + i))
            cyc += _cycles16(hw)
            i += 2
            last_bcond = addr + i if is_bcond(hw) else None
        n += 1
    return n, cyc, last_bcond


def scan_thumb(code, base=0):
    """Static check of a code range: list of (offset, problem) for non-ARMv6-M encodings."""
    bad = []
    i = 0
    while i + 1 < len(code):
        hw = code[i] | code[i + 1] << 8
        if is_wide(hw):
            hw2 = code[i + 2] | code[i + 3] << 8 if i + 3 < len(code) else 0
            if check_wide(hw, hw2) is None:
                bad.append((base + i, "%04x %04x" % (hw, hw2)))
            i += 4
        else:
            why = check_narrow(hw)
            if why:
                bad.append((base + i, "%04x %s" % (hw, why)))
            i += 2
    return bad


# ---- newlib memmove/memset for mp_fun_table ----------------------------------------------------

def build_memops():
    """Link newlib's ARMv6-M memmove/memset/memcpy at MEMOPS; returns (bytes, {name: addr})."""
    os.makedirs(EMU_BUILD, exist_ok=True)
    src = os.path.join(EMU_BUILD, "memops.c")
    obj = os.path.join(EMU_BUILD, "memops.o")
    elf = os.path.join(EMU_BUILD, "memops.elf")
    binf = os.path.join(EMU_BUILD, "memops.bin")
    with open(src, "w") as f:
        f.write("#include <string.h>\n"
                "void *ota_keep[] = { (void *)memmove, (void *)memset, (void *)memcpy };\n")
    libdir = subprocess.check_output(
        ["arm-none-eabi-gcc", "-mthumb", "-mcpu=cortex-m0plus", "-print-file-name=libc.a"],
        text=True).strip()
    subprocess.check_call(["arm-none-eabi-gcc", "-mthumb", "-mcpu=cortex-m0plus", "-Os", "-c",
                           src, "-o", obj])
    subprocess.check_call(["arm-none-eabi-ld", "-Ttext=0x%x" % MEMOPS, "-e", "0", "-o", elf, obj,
                           libdir])
    subprocess.check_call(["arm-none-eabi-objcopy", "-O", "binary", "-j", ".text", elf, binf])
    syms = {}
    for line in subprocess.check_output(["arm-none-eabi-nm", elf], text=True).splitlines():
        p = line.split()
        if len(p) == 3 and p[2] in ("memmove", "memset", "memcpy"):
            syms[p[2]] = int(p[0], 16)
    with open(binf, "rb") as f:
        code = f.read()
    if len(code) > MEMOPS_MAX or set(syms) != {"memmove", "memset", "memcpy"}:
        raise MpyError("memops: unexpected link result")
    return code, syms


# ---- host-side objects ---------------------------------------------------------------------

class HostObj:
    """An object of the fake runtime, living at `addr` (its first word is a type pointer)."""

    def __init__(self, kind, value=None, **kw):
        self.kind, self.value = kind, value
        self.__dict__.update(kw)
        self.addr = 0


class PyException(Exception):
    """A Python exception raised by the module (ValueError etc.) is re-raised as itself; this wraps
    exceptions of non-builtin types created by the module."""


class EmuBuffer:
    """A buffer allocated in emulated SRAM (no copies per call): pass it where the API takes a
    buffer; read it back with .bytes()."""

    def __init__(self, machine, n, addr):
        self.m, self.n, self.addr = machine, n, addr
        self.obj = None

    def __len__(self):
        return self.n

    def bytes(self, n=None):
        return bytes(self.m.uc.mem_read(self.addr, self.n if n is None else n))

    def write(self, data, off=0):
        self.m.uc.mem_write(self.addr + off, bytes(data))


class Machine:
    """An emulated Cortex-M0+ with MicroPython's native-module ABI (see the module docstring)."""

    def __init__(self, trace=True):
        self.uc = uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(A.UC_CPU_ARM_CORTEX_M0)
        uc.mem_map(SRAM, SRAM_SIZE)
        uc.mem_map(HOOKS, 0x1000)
        uc.mem_map(HOST, HOST_SIZE)
        uc.mem_write(HOOKS, b"\x70\x47\x00\xbf" * 0x400)  # bx lr; nop
        self.host_ptr = HOST
        self.host = {}  # addr -> HostObj
        self.static_qstrs = static_qstrs()
        self.qstr_ids = {s: i + 1 for i, s in enumerate(self.static_qstrs)}
        self.qstr_names = {i + 1: s for i, s in enumerate(self.static_qstrs)}
        self.globals = {}  # the module's globals: qstr name -> raw obj
        self.cur_globals = 0
        self.nlr = []  # active nlr frames: (buf addr, saved regs)
        self.pending_exc = None
        self.depth = 0
        # counters
        self.instructions = 0
        self.cycles = 0
        self.blocks = {}
        self._pending_fallthrough = None
        self.calls = {}  # hook name -> count
        # mp_fun_table
        self.memops, self.memops_syms = build_memops()
        uc.mem_write(MEMOPS, self.memops)
        self._make_types()
        table = []
        for i, name in enumerate(FUN_TABLE_NAMES):
            if name == "const_none":
                v = NONE
            elif name == "const_false":
                v = FALSE
            elif name == "const_true":
                v = TRUE
            elif name == "setjmp_":
                v = 0  # native NLR (as on rp2)
            elif name == "memset_":
                v = self.memops_syms["memset"] | 1
            elif name == "memmove_":
                v = self.memops_syms["memmove"] | 1
            elif name == "plat_print":
                v = self.new_host(HostObj("print")).addr
            elif name.startswith("type_"):
                v = self.types[name[5:]].addr
            elif name.startswith("stream_"):
                v = self.new_host(HostObj("fun_host", name)).addr
            else:
                v = (HOOKS + 4 * i) | 1
            table.append(v)
        uc.mem_write(FUN_TABLE, struct.pack("<%dI" % len(table), *table))
        self.fun_table = table
        uc.hook_add(UC_HOOK_CODE, self._hook, begin=HOOKS, end=HOOKS + 0xFFF)
        self.trace = trace
        self.text_range = (MEMOPS, MEMOPS + len(self.memops))
        self.module = None
        self.module_types = set()
        self.code_range = (0, 0)
        self.on_free = None  # on_free(addr, size): called by m_free before the block is freed

    # ---- memory helpers
    def r32(self, a):
        return struct.unpack("<I", self.uc.mem_read(a, 4))[0]

    def w32(self, a, v):
        self.uc.mem_write(a, struct.pack("<I", v & 0xFFFFFFFF))

    def cstr(self, a, maxlen=4096):
        data = bytes(self.uc.mem_read(a, maxlen))
        return data[:data.index(0)].decode(errors="replace")

    def host_alloc(self, n, align=8):
        a = (self.host_ptr + align - 1) & ~(align - 1)
        self.host_ptr = a + max(n, 4)
        if self.host_ptr > HOST + HOST_SIZE:
            raise MemoryError("emulator host area full")
        return a

    def new_host(self, obj, extra=b"", type_addr=None):
        a = self.host_alloc(16 + len(extra))
        obj.addr = a
        t = type_addr if type_addr is not None else self.types[obj.kind].addr if obj.kind in self.types else self.types["object"].addr
        self.w32(a, t)
        if extra:
            self.uc.mem_write(a + 4, extra)
        self.host[a] = obj
        return obj

    # ---- fake builtin types: real mp_obj_type_t shapes (base, flags, name, 12 slot indexes)
    def _make_types(self):
        self.types = {}
        names = ["type", "str", "list", "dict", "fun_builtin_0", "fun_builtin_1", "fun_builtin_2",
                 "fun_builtin_3", "fun_builtin_var", "Exception", "object", "bytes", "bytearray",
                 "int", "NoneType", "bool", "tuple", "fun_native", "fun_host", "print",
                 "bound_meth", "pyobj"]
        exc = ["ValueError", "TypeError", "OSError", "MemoryError", "RuntimeError", "IndexError",
               "KeyError", "EOFError", "NotImplementedError", "OverflowError"]
        for n in names + exc:
            a = self.host_alloc(20 + 12 * 4)
            q = self.qstr(n) if n in self.qstr_ids else 0
            self.uc.mem_write(a, struct.pack("<IHH12B", 0, 0, q, *([0] * 12)))
            t = HostObj("type", n, pytype=None)
            t.addr = a
            self.host[a] = t
            self.types[n] = t
        for t in self.types.values():
            self.w32(t.addr, self.types["type"].addr)
        import builtins
        for n in exc + ["bytes", "bytearray", "int", "str", "tuple", "list", "dict", "bool", "Exception"]:
            self.types[n].pytype = getattr(builtins, n)
        self.builtin_globals = {n: self.types[n].addr for n in exc + ["bytes", "bytearray", "int", "str", "tuple", "list", "dict", "bool", "Exception"]}

    # ---- qstrs
    def qstr(self, s):
        if s not in self.qstr_ids:
            q = 1000 + len(self.qstr_ids)
            self.qstr_ids[s] = q
            self.qstr_names[q] = s
        return self.qstr_ids[s]

    # ---- objects: emulated <-> Python
    @staticmethod
    def small_int(v):
        return ((v << 1) | 1) & 0xFFFFFFFF

    def to_py(self, o):
        if o & 1:
            return (o - (1 << 32) if o & 0x80000000 else o) >> 1
        if o & 7 == 2:
            return self.qstr_names[o >> 3]
        if o == NONE:
            return None
        if o == FALSE:
            return False
        if o == TRUE:
            return True
        if o == NULL:
            raise MpyError("NULL object")
        h = self.host.get(o)
        if h is not None:
            if h.kind in ("bytes", "str", "int", "pyobj", "bound_meth", "exc"):
                return h.value
            if h.kind in ("tuple", "list"):
                return [self.to_py(x) for x in h.value]
            if h.kind == "buffer":
                return h.value
            return h
        t = self.r32(o)
        if t in self.module_types:
            return self.instance(o)
        if t == self.types["type"].addr and o in self.module_types:
            return EmuType(self, o)
        raise MpyError("unknown object 0x%08x" % o)

    def from_py(self, v, writeback):
        if isinstance(v, bool):
            return TRUE if v else FALSE
        if v is None:
            return NONE
        if isinstance(v, int):
            if -(1 << 30) <= v < (1 << 30):
                return self.small_int(v)
            return self.new_host(HostObj("int", v)).addr
        if isinstance(v, str):
            return self.native_str(v.encode(), "str")
        if isinstance(v, (EmuInstance, EmuType)):
            return v.addr
        if isinstance(v, EmuBuffer):
            if v.obj is None:
                v.obj = self.buffer_obj(v.addr, v.n, v)
            return v.obj
        if isinstance(v, bytes):
            return self.native_str(v, "bytes")
        if isinstance(v, (bytearray, memoryview)):
            mv = memoryview(v).cast("B")
            a = self.host_alloc(len(mv))
            self.uc.mem_write(a, bytes(mv))
            o = self.buffer_obj(a, len(mv), v)
            if not mv.readonly:
                writeback.append((mv, a))
            return o
        if isinstance(v, HostObj):
            return v.addr
        return self.new_host(HostObj("pyobj", v)).addr

    def native_str(self, data, kind):
        """mp_obj_str_t {base, hash, len, data} + data in the host area."""
        a = self.host_alloc(len(data) + 1)
        self.uc.mem_write(a, data + b"\0")
        h = self.new_host(HostObj(kind, data if kind == "bytes" else data.decode()),
                          struct.pack("<III", 0, len(data), a))
        return h.addr

    def buffer_obj(self, items, n, value):
        """mp_obj_array_t {base, typecode 'B' | free << 8, len, items}."""
        h = self.new_host(HostObj("buffer", value), struct.pack("<III", ord("B"), n, items),
                          type_addr=self.types["bytearray"].addr)
        return h.addr

    # ---- running code
    def _block(self, uc, addr, size, _):
        pf = self._pending_fallthrough
        if pf is not None and addr != pf:
            self.cycles += 1  # the conditional branch ending the previous block was taken
        info = self.blocks.get((addr, size))
        if info is None:
            if not (self.text_range[0] <= addr < self.text_range[1]
                    or self.code_range[0] <= addr < self.code_range[1]):
                raise IsaError("executing outside the module text: 0x%08x" % addr)
            info = decode_block(bytes(uc.mem_read(addr, size)), addr)
            self.blocks[(addr, size)] = info
        n, cyc, self._pending_fallthrough = info
        self.instructions += n
        self.cycles += cyc

    def call(self, fn, *args):
        """Call emulated code fn(args...) with the AAPCS; returns r0. Python exceptions raised by
        the runtime (and not caught by an nlr frame in the module) propagate."""
        if self.depth:
            raise MpyError("nested call into the emulator")
        regs = [A.UC_ARM_REG_R0, A.UC_ARM_REG_R1, A.UC_ARM_REG_R2, A.UC_ARM_REG_R3]
        sp = STACK_TOP
        extra = list(args[4:])
        sp -= 4 * len(extra)
        sp &= ~7
        for i, v in enumerate(extra):
            self.w32(sp + 4 * i, v)
        for r, v in zip(regs, args[:4]):
            self.uc.reg_write(r, v & 0xFFFFFFFF)
        self.uc.reg_write(A.UC_ARM_REG_SP, sp)
        self.uc.reg_write(A.UC_ARM_REG_LR, RET_MAGIC | 1)
        self.nlr = []
        self.depth = 1
        self._pending_fallthrough = None
        try:
            self.uc.emu_start(fn | 1, RET_MAGIC)
        except UcError as e:
            pc = self.uc.reg_read(A.UC_ARM_REG_PC)
            raise MpyError("emulation fault %s at pc=0x%08x" % (e, pc)) from None
        finally:
            self.depth = 0
            # Exceptions live only while raised (the glue re-raises o->exc before returning):
            # forget them so their tracebacks do not keep objects (and SRAM) alive.
            for a in [a for a, h in self.host.items() if h.kind == "exc"]:
                del self.host[a]
        if self.pending_exc is not None:
            e, self.pending_exc = self.pending_exc, None
            raise e
        pc = self.uc.reg_read(A.UC_ARM_REG_PC)
        if pc & ~1 != RET_MAGIC:
            raise MpyError("emulation stopped at 0x%08x" % pc)
        return self.uc.reg_read(A.UC_ARM_REG_R0)

    def call_obj(self, fun, args, kw=None):
        """Call a function object as MicroPython's mp_call_function_n_kw would (raw objects)."""
        kw = kw or {}
        t = self.r32(fun)
        ty = self.types
        if t in (ty["fun_builtin_0"].addr, ty["fun_builtin_1"].addr, ty["fun_builtin_2"].addr,
                 ty["fun_builtin_3"].addr):
            n = [ty["fun_builtin_%d" % i].addr for i in range(4)].index(t)
            if len(args) != n or kw:
                raise TypeError("function takes %d positional arguments but %d were given" % (n, len(args)))
            return self.call(self.r32(fun + 4), *args)
        if t == ty["fun_builtin_var"].addr:
            sig, f = self.r32(fun + 4), self.r32(fun + 8)
            nmin, nmax, takes_kw = sig >> 17, (sig >> 1) & 0xFFFF, sig & 1
            if kw and not takes_kw:
                raise TypeError("function doesn't take keyword arguments")
            if not nmin <= len(args) <= nmax:
                raise TypeError("function got %d arguments, wants %d..%d" % (len(args), nmin, nmax))
            argv = self.host_alloc(4 * max(1, len(args)))
            for i, a in enumerate(args):
                self.w32(argv + 4 * i, a)
            if takes_kw:
                raise MpyError("kw builtins not implemented")
            return self.call(f, len(args), argv)
        raise MpyError("not callable: 0x%08x" % fun)

    # ---- loading (persistentcode.c: load_raw_code + mp_native_relocate)
    def load(self, path):
        with open(path, "rb") as f:
            data = f.read()
        mpy = MpyFile(data)
        self.mpy = mpy
        # qstr table (mp_module_context_alloc_tables + load_qstr)
        ids = []
        for kind, v in mpy.qstrs:
            ids.append(v if kind == "static" else self.qstr(v))
        if 2 * len(ids) > MEMOPS - QSTR_TABLE:
            raise MpyError("too many qstrs")
        self.uc.mem_write(QSTR_TABLE, struct.pack("<%dH" % len(ids), *ids))
        # text, then bss + rodata in one zeroed block (m_new0(bss_size + rodata_size))
        text = TEXT
        bss = (text + len(mpy.text) + 7) & ~7
        bss_size = (mpy.bss_size + 3) & ~3
        rodata = bss + bss_size
        self.heap = (rodata + mpy.rodata_size + 7) & ~7
        self.heap_end = STACK_TOP - STACK_SIZE
        self.free = [(self.heap, self.heap_end - self.heap)]
        self.allocs = {}
        self.instances = {}
        if self.heap > self.heap_end:
            raise MpyError("module does not fit in SRAM")
        self.uc.mem_write(text, mpy.text)
        self.uc.mem_write(bss, bytes(bss_size) + mpy.rodata)
        buf = bytearray(mpy.text)
        robuf = bytearray(mpy.rodata)
        for base, idx, dest, n in mpy.relocs:
            if dest == "text":
                d = text
            elif dest == "rodata":
                d = rodata
            elif dest == "bss":
                d = bss
            elif dest == "qstr_table":
                d = QSTR_TABLE
            elif dest == "obj_table":
                d = 0  # empty table (n_obj == 0)
            elif dest == "mp_fun_table":
                d = FUN_TABLE
            else:
                d = self.fun_table[dest[1]]
            tgt = buf if base == "text" else robuf
            for k in range(idx, idx + n):
                v = struct.unpack_from("<I", tgt, 4 * k)[0]
                struct.pack_into("<I", tgt, 4 * k, (v + d) & 0xFFFFFFFF)
        self.uc.mem_write(text, bytes(buf))
        if robuf:
            self.uc.mem_write(rodata, bytes(robuf))
        self.text_addr, self.bss_addr, self.rodata_addr = text, bss, rodata
        self.relocated_text = bytes(buf)
        self.code_range = (text, text + len(buf))
        if self.trace:
            self.uc.hook_add(UC_HOOK_BLOCK, self._block, begin=MEMOPS, end=text + len(buf) - 1)
        # Paint the stack to measure its use.
        self.uc.mem_write(STACK_TOP - STACK_SIZE, b"\xa5" * STACK_SIZE)
        # mp_obj_fun_bc_t for the module function: {base, context, child_table, bytecode};
        # context = mp_module_context_t {module {base, globals}, constants {qstr_table, obj_table}}
        gl = self.new_host(HostObj("dict", self.globals, module=True), struct.pack("<III", 0, 0, 0),
                           type_addr=self.types["dict"].addr)
        ctx = self.host_alloc(20)
        self.uc.mem_write(ctx, struct.pack("<IIII", self.types["object"].addr, gl.addr, QSTR_TABLE, 0))
        fun = self.new_host(HostObj("fun_native", text), struct.pack("<III", ctx, 0, text),
                            type_addr=self.types["fun_native"].addr)
        self.module_globals_addr = gl.addr
        self.cur_globals = NULL
        self.module_types = set()
        # The .mpy entry: the first instruction of text (a branch to mpy_init).
        r = self.call(text, fun.addr, 0, 0, 0)
        if r != NONE:
            raise MpyError("mpy_init returned 0x%08x" % r)
        if self.cur_globals != NULL:
            raise MpyError("mpy_init did not restore the globals")
        for name, o in self.globals.items():
            if o & 3 == 0 and o and self.r32(o) == self.types["type"].addr and o not in self.host:
                self.module_types.add(o)
        self.module = EmuModule(self)
        return self.module

    def stack_used(self):
        data = bytes(self.uc.mem_read(STACK_TOP - STACK_SIZE, STACK_SIZE))
        for i, b in enumerate(data):
            if b != 0xA5:
                return STACK_SIZE - i
        return 0

    def alloc_buffer(self, n):
        """A buffer in SRAM (the module's heap), for benchmarks and zero-copy calls."""
        a = self.heap_alloc(n)
        return EmuBuffer(self, n, a)

    def heap_alloc(self, n):
        """First-fit allocator over the SRAM heap (MicroPython's GC heap stands here: blocks of
        objects are freed when their Python wrapper is collected, see EmuInstance)."""
        n = (max(n, 4) + 7) & ~7
        a = self._first_fit(n)
        if not a:  # as MicroPython's gc_alloc: collect, then retry once
            gc.collect()
            a = self._first_fit(n)
            if not a and os.environ.get("MPYLOAD_DEBUG"):
                print("heap full: want", n, "allocs", sorted(self.allocs.items()), "free", self.free,
                      "instances", list(self.instances), file=sys.stderr)
        return a

    def _first_fit(self, n):
        for i, (a, size) in enumerate(self.free):
            if size >= n:
                if size == n:
                    del self.free[i]
                else:
                    self.free[i] = (a + n, size - n)
                self.allocs[a] = n
                return a
        return 0

    def heap_free(self, a):
        n = self.allocs.pop(a, None)
        if n is None:
            return
        self.free.append((a, n))
        self.free.sort()
        merged = []
        for b, size in self.free:
            if merged and merged[-1][0] + merged[-1][1] == b:
                merged[-1] = (merged[-1][0], merged[-1][1] + size)
            else:
                merged.append((b, size))
        self.free = merged

    def instance(self, o):
        w = self.instances.get(o)
        inst = w() if w is not None else None
        if inst is None:
            inst = EmuInstance(self, o)
            self.instances[o] = weakref.ref(inst)
            weakref.finalize(inst, self._collect, o)
        return inst

    def _collect(self, o):
        self.instances.pop(o, None)
        self.heap_free(o)

    # ---- hooks: the runtime functions of mp_fun_table
    def _hook(self, uc, addr, size, _):
        if addr == RET_MAGIC:
            return
        i = (addr - HOOKS) // 4
        name = FUN_TABLE_NAMES[i]
        self.calls[name] = self.calls.get(name, 0) + 1
        r = [uc.reg_read(x) for x in (A.UC_ARM_REG_R0, A.UC_ARM_REG_R1, A.UC_ARM_REG_R2, A.UC_ARM_REG_R3)]
        try:
            res = getattr(self, "f_" + name)(*r)
        except _TailCall:
            return
        except BaseException as e:  # a Python-level exception in MicroPython: nlr_jump
            self._raise(e)
            return
        if res is not None:
            uc.reg_write(A.UC_ARM_REG_R0, res & 0xFFFFFFFF)

    def _raise(self, exc):
        """nlr_jump: to the innermost nlr frame if any, else out of the emulation."""
        if not isinstance(exc, Exception) or isinstance(exc, (IsaError, MpyError)) or not self.nlr:
            self.pending_exc = exc
            self.uc.emu_stop()
            return
        buf, saved = self.nlr.pop()
        exc_obj = self.exc_obj(exc)
        self.w32(buf + 4, exc_obj)
        for reg, v in saved.items():
            self.uc.reg_write(reg, v)
        self.uc.reg_write(A.UC_ARM_REG_R0, 1)
        self.uc.reg_write(A.UC_ARM_REG_PC, saved[A.UC_ARM_REG_LR] | 1)

    def exc_obj(self, exc):
        for a, h in self.host.items():
            if h.kind == "exc" and h.value is exc:
                return a
        return self.new_host(HostObj("exc", exc), type_addr=self.types.get(type(exc).__name__, self.types["Exception"]).addr).addr

    def _tail(self, fn, *args):
        for r, v in zip((A.UC_ARM_REG_R0, A.UC_ARM_REG_R1, A.UC_ARM_REG_R2, A.UC_ARM_REG_R3), args):
            self.uc.reg_write(r, v & 0xFFFFFFFF)
        self.uc.reg_write(A.UC_ARM_REG_PC, fn | 1)
        raise _TailCall()

    def _unimpl(name):
        def f(self, *a):
            raise MpyError("mp_fun_table.%s is not emulated" % name)
        return f

    for _n in FUN_TABLE_NAMES:
        locals()["f_" + _n] = _unimpl(_n)
    del _n

    def f_native_from_obj(self, o, typ, *_):
        if typ == MP_NATIVE_TYPE_BOOL:
            return 1 if self.to_py(o) else 0
        if typ in (MP_NATIVE_TYPE_INT, MP_NATIVE_TYPE_UINT):
            v = self.to_py(o)
            if not isinstance(v, int):
                raise TypeError("can't convert %s to int" % type(v).__name__)
            return v & 0xFFFFFFFF
        if typ == MP_NATIVE_TYPE_OBJ:
            return o
        raise MpyError("native_from_obj type %d" % typ)

    def f_native_to_obj(self, v, typ, *_):
        if typ == MP_NATIVE_TYPE_QSTR:
            return (v << 3) | 2
        if typ == MP_NATIVE_TYPE_INT:
            v = v - (1 << 32) if v & 0x80000000 else v
            return self.from_py(v, [])
        if typ == MP_NATIVE_TYPE_UINT:
            return self.from_py(v, [])
        if typ == MP_NATIVE_TYPE_BOOL:
            return TRUE if v else FALSE
        if typ == MP_NATIVE_TYPE_OBJ:
            return v
        raise MpyError("native_to_obj type %d" % typ)

    def f_swap_globals(self, new, *_):
        old, self.cur_globals = self.cur_globals, new
        return old

    def f_store_global(self, q, o, *_):
        if self.cur_globals != self.module_globals_addr:
            raise MpyError("store_global outside the module's globals")
        self.globals[self.qstr_names[q]] = o
        return 0

    f_store_name = f_store_global

    def f_load_global(self, q, *_):
        name = self.qstr_names[q]
        if name in self.globals:
            return self.globals[name]
        if name in self.builtin_globals:
            return self.builtin_globals[name]
        raise NameError("name '%s' isn't defined" % name)

    f_load_name = f_load_global

    def f_arg_check_num_sig(self, n_args, n_kw, sig, *_):
        nmin, nmax, takes_kw = sig >> 17, (sig >> 1) & 0xFFFF, sig & 1
        if n_kw and not takes_kw:
            raise TypeError("function doesn't take keyword arguments")
        if n_args < nmin:
            raise TypeError("function missing %d required positional arguments" % (nmin - n_args))
        if n_args > nmax:
            raise TypeError("function expected at most %d arguments, got %d" % (nmax, n_args))
        return 0

    def f_realloc_(self, ptr, n, allow_move, *_):
        if n == 0:  # m_free: the block is free again (unless a Python wrapper still holds it)
            if ptr in self.allocs and ptr not in self.instances:
                if self.on_free:
                    self.on_free(ptr, self.allocs[ptr])
                self.heap_free(ptr)
            return 0
        a = self.heap_alloc(n)
        if ptr and a:
            self.uc.mem_write(a, bytes(self.uc.mem_read(ptr, n)))
        return a

    def f_load_method(self, base, attr, dest, *_):
        name = self.qstr_names[attr]
        h = self.host.get(base)
        if h is not None and h.kind == "pyobj":
            meth = getattr(h.value, name)  # AttributeError as in MicroPython
            m = self.new_host(HostObj("bound_meth", meth))
            self.w32(dest, m.addr)
            self.w32(dest + 4, NULL)
            return 0
        if base & 3 == 0 and base and self.r32(base) in self.module_types:
            f = self.lookup(self.r32(base), name)
            if f is None:
                raise AttributeError("'%s' object has no attribute '%s'" % (self.type_name(self.r32(base)), name))
            self.w32(dest, f)
            self.w32(dest + 4, base)
            return 0
        raise AttributeError("object has no attribute '%s'" % name)

    def f_call_method_n_kw(self, n_args, n_kw, args, *_):
        fun, self_obj = self.r32(args), self.r32(args + 4)
        argv = [self.r32(args + 8 + 4 * i) for i in range(n_args + 2 * n_kw)]
        if self_obj != NULL:
            return self.call_any(fun, [self_obj] + argv[:n_args], n_kw, args + 4)
        return self.call_any(fun, argv[:n_args], n_kw, args + 8)

    def f_call_function_n_kw(self, fun, n_args_kw, args, *_):
        n_args, n_kw = n_args_kw & 0xFF, n_args_kw >> 8
        argv = [self.r32(args + 4 * i) for i in range(n_args)]
        return self.call_any(fun, argv, n_kw, args)

    def call_any(self, fun, argv, n_kw, args_ptr):
        """Call `fun` from inside the emulation: host callables run in Python, emulated functions
        are entered by a tail call (the hook's return address becomes theirs)."""
        if n_kw:
            raise MpyError("keyword arguments in calls from the module are not emulated")
        h = self.host.get(fun)
        if h is not None:
            if h.kind in ("bound_meth", "pyobj"):
                wb = []
                pyargs = [self.to_py_arg(a) for a in argv]
                res = h.value(*[p[0] for p in pyargs])
                for data, a, n in [p[1] for p in pyargs if p[1]]:
                    self.uc.mem_write(a, bytes(data[:n]))
                return self.from_py(res, wb)
            if h.kind == "type" and h.pytype is not None:
                exc = h.pytype(*[self.to_py(a) for a in argv])
                if isinstance(exc, BaseException):
                    return self.exc_obj(exc)
                return self.from_py(exc, [])
            raise MpyError("cannot call host object %s" % h.kind)
        t = self.r32(fun)
        ty = self.types
        for i in range(4):
            if t == ty["fun_builtin_%d" % i].addr:
                if len(argv) != i:
                    raise TypeError("function takes %d positional arguments but %d were given" % (i, len(argv)))
                self._tail(self.r32(fun + 4), *argv)
        if t == ty["fun_builtin_var"].addr:
            sig = self.r32(fun + 4)
            self.f_arg_check_num_sig(len(argv), 0, sig)
            self._tail(self.r32(fun + 8), len(argv), args_ptr)
        raise MpyError("cannot call object 0x%08x from the module" % fun)

    def to_py_arg(self, o):
        """Argument for a Python method: a bytearray(-by-ref) becomes a bytearray copy that is
        written back after the call (what a readinto fills)."""
        h = self.host.get(o)
        if h is not None and h.kind == "buffer":
            _, n, items = struct.unpack("<III", self.uc.mem_read(o + 4, 12))
            n = n
            data = bytearray(self.uc.mem_read(items, n)) if n else bytearray()
            return data, (data, items, n)
        return self.to_py(o), None

    def f_obj_new_bytearray_by_ref(self, n, items, *_):
        # A GC-heap object in SRAM (the glue retargets its items/len per callback).
        a = self.heap_alloc(16)
        if not a:
            raise MemoryError()
        self.uc.mem_write(a, struct.pack("<IIII", self.types["bytearray"].addr, ord("B"), n, items))
        h = HostObj("buffer", None)
        h.addr = a
        self.host[a] = h
        return a

    def f_obj_new_str(self, data, n, *_):
        return self.native_str(bytes(self.uc.mem_read(data, n)), "str")

    def f_obj_new_bytes(self, data, n, *_):
        return self.native_str(bytes(self.uc.mem_read(data, n)), "bytes")

    def f_get_buffer(self, o, bufinfo, flags, *_):
        h = self.host.get(o)
        if h is not None and h.kind in ("bytes", "str", "buffer"):
            if h.kind == "buffer":
                _, n, items = struct.unpack("<III", self.uc.mem_read(o + 4, 12))
                if flags & 2 and isinstance(h.value, (bytes,)):
                    raise TypeError("object doesn't support item assignment")
            else:
                _, n, items = struct.unpack("<III", self.uc.mem_read(o + 4, 12))
                if flags & 2:
                    if flags & MP_BUFFER_RAISE_IF_UNSUPPORTED:
                        raise TypeError("object with buffer protocol required")
                    return 0
            self.uc.mem_write(bufinfo, struct.pack("<IIi", items, n, ord("B")))
            return 1
        if flags & MP_BUFFER_RAISE_IF_UNSUPPORTED:
            raise TypeError("object with buffer protocol required")
        return 0

    def f_raise_msg(self, typ, msg, *_):
        h = self.host.get(typ)
        text = self.cstr(msg) if msg else ""
        if h is not None and h.kind == "type" and h.pytype is not None:
            raise h.pytype(text)
        raise PyException("%s: %s" % (self.type_name(typ), text))

    def f_raise(self, o, *_):
        h = self.host.get(o)
        if h is not None and h.kind == "exc":
            raise h.value
        if h is not None and h.kind == "type" and h.pytype is not None:
            raise h.pytype()
        raise PyException("raise of object 0x%08x" % o)

    def f_nlr_push(self, buf, *_):
        regs = [getattr(A, "UC_ARM_REG_R%d" % i) for i in range(4, 12)] + [A.UC_ARM_REG_SP, A.UC_ARM_REG_LR]
        self.nlr.append((buf, {r: self.uc.reg_read(r) for r in regs}))
        return 0

    def f_nlr_pop(self, *_):
        self.nlr.pop()
        return 0

    def f_obj_get_type(self, o, *_):
        if o & 1:
            return self.types["int"].addr
        if o & 7 == 2:
            return self.types["str"].addr
        if o == NONE:
            return self.types["NoneType"].addr
        if o in (TRUE, FALSE):
            return self.types["bool"].addr
        return self.r32(o)

    def f_printf_(self, *_):
        return 0

    # ---- type helpers
    def type_name(self, t):
        q = struct.unpack("<H", self.uc.mem_read(t + 6, 2))[0]
        return self.qstr_names.get(q, "?")

    def type_slot(self, t, index):
        """index: 0 make_new, 1 print, 2 call, ... 11 locals_dict (mp_obj_type_t order)."""
        si = self.uc.mem_read(t + 8 + index, 1)[0]
        return self.r32(t + 20 + 4 * (si - 1)) if si else 0

    def lookup(self, t, name):
        d = self.type_slot(t, 11)
        if not d:
            return None
        if d in self.host:
            return self.host[d].value.get(name)
        # mp_obj_dict_t {base, map {flags|used<<3, alloc, table}}
        used = self.r32(d + 4) >> 3
        table = self.r32(d + 12)
        key = (self.qstr(name) << 3) | 2
        for i in range(used):
            if self.r32(table + 8 * i) == key:
                return self.r32(table + 8 * i + 4)
        return None


class _TailCall(Exception):
    pass


class EmuModule:
    def __init__(self, m):
        self._m = m

    def __getattr__(self, name):
        m = self._m
        if name not in m.globals:
            raise AttributeError(name)
        o = m.globals[name]
        if o in m.module_types:
            return EmuType(m, o)
        return m.to_py(o)

    def __dir__(self):
        return list(self._m.globals)


def _call_py(m, fun, args, kwargs):
    wb = []
    raw = [m.from_py(a, wb) for a in args]
    kw = {k: m.from_py(v, wb) for k, v in kwargs.items()}
    r = fun(raw, kw)
    for mv, a in wb:
        mv[:] = m.uc.mem_read(a, len(mv))
    return r


class EmuType:
    """A type defined by the module (mp_obj_full_type_t in its bss)."""

    def __init__(self, m, addr):
        self.m, self.addr = m, addr

    @property
    def __name__(self):
        return self.m.type_name(self.addr)

    def __call__(self, *args, **kwargs):
        m = self.m
        make_new = m.type_slot(self.addr, 0)
        if not make_new:
            raise TypeError("cannot create instance")

        def go(raw, kw):
            allargs = raw + [x for k, v in kw.items() for x in ((m.qstr(k) << 3) | 2, v)]
            argv = m.host_alloc(4 * max(1, len(allargs)))
            for i, a in enumerate(allargs):
                m.w32(argv + 4 * i, a)
            return m.call(make_new, self.addr, len(raw), len(kw), argv)

        return m.to_py(_call_py(m, go, args, kwargs))


class EmuInstance:
    """An instance of a module type: attribute lookup through the type's locals_dict."""

    def __init__(self, m, addr):
        self.m, self.addr = m, addr

    def __getattr__(self, name):
        m = self.m
        if name.startswith("__"):
            raise AttributeError(name)
        f = m.lookup(m.r32(self.addr), name)
        if f is None:
            raise AttributeError(name)

        def method(*args, **kwargs):
            return m.to_py(_call_py(m, lambda raw, kw: m.call_obj(f, [self.addr] + raw, kw), args, kwargs))

        return method
