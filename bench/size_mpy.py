"""Size of build/armv6m/ota_native.mpy and of the verifier module ota_ed25519.mpy, broken down by part.

Run: .venv/bin/python bench/size_mpy.py [armv6m|x64]

The map comes from re-running MicroPython's mpy_ld.py on the build's objects (tests/emu/mpymap.py,
checked byte-identical to the .mpy's text). Each text section is attributed by the (demangled)
symbols in it; read-only data by the part of the code that references it (relocations); libgcc by
its symbol names. Code inlined by LTO counts where it ended up (e.g. miniz_oxide's decompressor is
inlined into ota_core::inflate, ota_core into the extern "C" entry points of ota_natmod).
"""

import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "emu"))
import mpymap  # noqa: E402

TARGET = 20 * 1024
GLUE_OBJS = ("ota_init.o", "ota_native.o", "ota_ed25519.o", "ota_libc.o")  # the C glue (natmod/Makefile SRC)
MODULES = (("ota_native", TARGET), ("ota_ed25519", None))  # (module, size target)

RULES = [  # (regex on the demangled name, part); first match wins
    (r"^__aeabi_uidivmod$", "division (natmod/src/lib.rs)"),
    (r"^__aeabi_lmul$", "multiply (natmod/src/lib.rs)"),
    (r"^__(aeabi_|udiv|divsi|modsi|umod|clz|ctz|mul|ashl|ashr|lshr|udivmod|gnu_)", "libgcc"),
    (r"^ota_(init|read|state_size|state_digest)$|^ota_ed_|ota_natmod::", "FFI entry points (shared)"),
    (r"ed25519_compact::field25519", "Ed25519: field arithmetic"),
    (r"ed25519_compact::edwards25519", "Ed25519: curve (tables, scalar mult.)"),
    (r"ed25519_compact::sha512", "Ed25519: SHA-512"),
    (r"ed25519_compact|ota_core::sign", "Ed25519: keys, signatures, verify"),
    (r"^ota_hasher_|ota_core::blob|sha1_smol", "SHA1"),
    (r"^ota_inflate_|ota_core::inflate|miniz_oxide", "inflate"),
    (r"^ota_patch_|ota_core::bspatch", "bspatch"),
    (r"^ota_delta_|ota_core::pipeline", "pipeline"),
    (r"^ota_error_message|ota_core::error", "errors (shared)"),
    (r"ota_core::stream|core::|compiler_builtins|rust_begin_unwind", "Rust shared (stream, core, panics)"),
]
PARTS = ["glue (C)", "SHA1", "inflate", "bspatch", "pipeline", "Ed25519: field arithmetic",
         "Ed25519: curve (tables, scalar mult.)", "Ed25519: SHA-512", "Ed25519: keys, signatures, verify",
         "errors (shared)", "FFI entry points (shared)", "Rust shared (stream, core, panics)",
         "division (natmod/src/lib.rs)", "multiply (natmod/src/lib.rs)", "libgcc", "GOT (mpy_ld)", "other"]


def demangle(names):
    out = subprocess.run(["arm-none-eabi-c++filt"], input="\n".join(names), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return dict(zip(names, out))


def part_of(name, obj):
    if obj in GLUE_OBJS:
        return "glue (C)"
    name = re.sub(r"\[[0-9a-f]+\]", "", name)  # v0 mangling: crate[hash]::path
    for rx, part in RULES:
        if re.search(rx, name):
            return part
    OTHER.add(name)
    return "other"


OTHER = set()


def breakdown(arch="armv6m", module="ota_native"):
    lm = mpymap.LinkMap(arch, module=module)
    env = lm.env
    names = demangle(sorted({s.name for s in lm.symbols}))
    size = {p: 0 for p in PARTS}
    sec_part = {}
    code_secs = [s for s in env.sections if s is not env.got_section and s.name.startswith(".text")]
    for sec in code_secs:
        syms = [s for s in lm.symbols if sec.addr <= s.addr < sec.addr + len(sec.data)
                and s.section == sec.name and s.obj == os.path.basename(sec.filename)]
        counted = 0
        main = None
        by_addr = {}
        for s in syms:  # aliases (__aeabi_uidiv = __udivsi3, ...) share an address: count once
            if s.addr not in by_addr or s.size > by_addr[s.addr].size:
                by_addr[s.addr] = s
        for s in by_addr.values():
            p = part_of(names.get(s.name, s.name), s.obj)
            size[p] += s.size
            counted += s.size
            if main is None or s.size > main[1]:
                main = (p, s.size)
        p = main[0] if main else ("glue (C)" if os.path.basename(sec.filename) in GLUE_OBJS else "other")
        size[p] += max(0, len(sec.data) - counted)  # literal pools past st_size, unnamed code
        sec_part[id(sec)] = p
    # read-only data: the part of the code that refers to it
    refs = {}
    for sec in code_secs:
        for r in sec.reloc:
            s = r.sym
            target = getattr(s, "resolved", s)
            tsec = getattr(target, "section", None)
            if tsec is not None and tsec.name.startswith((".rodata", ".data.rel.ro")):
                refs.setdefault(id(tsec), set()).add(sec_part[id(sec)])
    for sec in env.sections:
        if sec.name.startswith((".rodata", ".data.rel.ro")):
            parts = refs.get(id(sec), set())
            p = parts.pop() if len(parts) == 1 else ("glue (C)" if os.path.basename(sec.filename) in GLUE_OBJS else "errors (shared)" if not parts else "Rust shared (stream, core, panics)")
            size[p] += len(sec.data)
    size["GOT (mpy_ld)"] += lm.got[1]
    laid_out = sum(size.values())
    padding = len(lm.text) - laid_out
    mpy = lm.mpy
    return lm, size, padding, mpy


def report(arch, module, target):
    path = os.path.join(ROOT, "build", arch, module + ".mpy")
    if not os.path.exists(path):
        sys.exit("%s missing: run `make natmod ARCH=%s`" % (path, arch))
    total = os.path.getsize(path)
    if arch != "armv6m":
        print("%s %s.mpy: %d bytes (breakdown is for armv6m)" % (arch, module, total))
        return
    OTHER.clear()
    lm, size, padding, mpy = breakdown(arch, module)
    verdict = "" if target is None else " (target <= %d: %s)" % (
        target, "OK" if total <= target else "OVER by %d" % (total - target))
    print("build/armv6m/%s.mpy: %d bytes%s" % (module, total, verdict))
    print("  machine code + rodata (text): %d, loaded into RAM; bss %d; relocation table %d; header + qstrs %d"
          % (len(mpy.text), mpy.bss_size, mpy.reloc_size, mpy.text_offset))
    print("%-38s %7s %6s" % ("part", "bytes", "%"))
    for p in PARTS:
        if size[p]:
            print("%-38s %7d %5.1f%%" % (p, size[p], 100.0 * size[p] / total))
    if padding:
        print("%-38s %7d %5.1f%%" % ("alignment padding", padding, 100.0 * padding / total))
    if OTHER:
        print("  ('other' holds: %s)" % ", ".join(sorted(OTHER)[:8]))
    other = total - len(mpy.text)
    print("%-38s %7d %5.1f%%" % (".mpy header, qstrs, relocs", other, 100.0 * other / total))


def main():
    arch = sys.argv[1] if len(sys.argv) > 1 else "armv6m"
    for i, (module, target) in enumerate(MODULES):
        if i:
            print()
        report(arch, module, target)


if __name__ == "__main__":
    main()
