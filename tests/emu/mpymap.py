"""Symbol map of build/<arch>/ota_native.mpy (or ota_ed25519.mpy), made by MicroPython's own linker.

mpy_ld.py keeps no map file, so this re-runs its linker (imported from the sdist, same version
as the build) on the same objects in the same order (glue object first, then the Rust object,
as dynruntime.mk passes `$^`), and checks that the text it lays out is byte-identical to the
text inside the .mpy before relocation. Then every section, symbol and ARM mapping symbol
($t code / $d data) has its offset in the .mpy's text.
"""

import os
import re
import sys

from elftools.elf.elffile import ELFFile

from mpyload import MPY_DIR, ROOT, MpyFile

NATMOD_BUILD = os.path.join(ROOT, "build", "{arch}", "{dir}")
# per module: its build folder and objects in the link order of natmod/Makefile
MODULES = {
    "ota_native": ("natmod", ("ota_init.o", "ota_native.o", "ota_libc.o", "ota_natmod_rt.o")),
    "ota_ed25519": ("natmod-ed25519", ("ota_ed25519.o", "ota_libc.o", "ota_natmod_rt.o")),
}
OBJECTS = MODULES["ota_native"][1]


class Sym:
    def __init__(self, name, addr, size, kind, section, obj):
        self.name, self.addr, self.size, self.kind = name, addr, size, kind
        self.section, self.obj = section, obj


class LinkMap:
    def __init__(self, arch="armv6m", mpy_path=None, module="ota_native"):
        folder, objects = MODULES[module]
        build = NATMOD_BUILD.format(arch=arch, dir=folder)
        self.objects = [os.path.join(build, o) for o in objects]
        for o in self.objects:
            if not os.path.exists(o):
                raise FileNotFoundError("%s missing: run `make natmod ARCH=%s`" % (o, arch))
        config_h = os.path.join(build, module + ".config.h")
        with open(config_h) as f:
            n_qstr = len(re.findall(r"#define MP_QSTR_\w+ \(mp_native_", f.read()))
        sys.path.insert(0, os.path.join(MPY_DIR, "tools"))
        try:
            import mpy_ld
        finally:
            sys.path.pop(0)
        mpy_ld.log_level = 0
        env = mpy_ld.LinkEnv(arch)
        for o in self.objects:
            mpy_ld.load_object_file(env, o)
        mpy_ld.link_objects(env, n_qstr)
        jump = env.arch.asm_jump(env.find_addr("mpy_init"))
        env.full_text[:len(jump)] = jump
        self.env = env
        self.text = bytes(env.full_text)
        self.got = (env.got_section.addr, len(env.got_section.data))
        self.mpy_path = mpy_path or os.path.join(ROOT, "build", arch, module + ".mpy")
        with open(self.mpy_path, "rb") as f:
            self.mpy = MpyFile(f.read()) if arch == "armv6m" else None
        if self.mpy is not None and self.mpy.text != self.text:
            raise AssertionError("re-linked text differs from the .mpy's: the map would be wrong")
        self._symbols(env)

    def _symbols(self, env):
        """Sections in env.sections order match (file, ELF section) in load_object_file order."""
        self.sections = []  # (addr, size, name, obj)
        self.symbols = []
        self.mapping = []  # (addr, 't'|'d')
        secs = [s for s in env.sections if s is not env.got_section]
        i = 0
        for o in self.objects:
            with open(o, "rb") as f:
                elf = ELFFile(f)
                idx_map = {}
                for idx, s in enumerate(elf.iter_sections()):
                    if s.header.sh_type in ("SHT_PROGBITS", "SHT_NOBITS") and s.data_size and \
                            s.name.startswith((".text", ".rodata", ".data.rel.ro", ".bss")):
                        sec = secs[i]
                        i += 1
                        assert sec.name == s.name and sec.filename == o, (sec.name, s.name)
                        idx_map[idx] = sec
                        self.sections.append((sec.addr, len(sec.data), sec.name, os.path.basename(o)))
                for sym in elf.get_section_by_name(".symtab").iter_symbols():
                    sec = idx_map.get(sym["st_shndx"]) if isinstance(sym["st_shndx"], int) else None
                    if sec is None or sec.name.startswith(".bss"):
                        continue
                    addr = sec.addr + sym["st_value"]
                    if sym.name.startswith(("$t", "$d")):
                        self.mapping.append((addr & ~1, sym.name[1]))
                    elif sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT"):
                        self.symbols.append(Sym(sym.name, addr & ~1, sym["st_size"],
                                                sym["st_info"]["type"], sec.name, os.path.basename(o)))
        assert i == len(secs)
        self.mapping.sort()

    def code_ranges(self):
        """[(start, end)] of Thumb code in the text (from $t/$d mapping symbols; the entry
        jump at offset 0 is code; the GOT is data)."""
        ranges = [(0, 2)]
        text_secs = sorted((a, a + n) for a, n, name, _ in self.sections if name.startswith(".text"))
        for start, end in text_secs:
            marks = [(a, k) for a, k in self.mapping if start <= a < end]
            if not marks or marks[0][0] != start:
                marks.insert(0, (start, "t"))  # a section starts as code
            for j, (a, k) in enumerate(marks):
                b = marks[j + 1][0] if j + 1 < len(marks) else end
                if k == "t" and b > a:
                    ranges.append((a, b))
        return ranges
