// Runs calls into the armv6m ota_native image on rp2040js's Cortex-M0+ and counts its cycles.
// Input: a JSON job written by bench_emu.py (SRAM image, hook addresses, source streams, calls).
// Output (stdout): JSON {calls: [{cycles, instructions, r0}], sram: <path of the final SRAM dump>}.
// The few mp_fun_table entries the Rust entry points reach through the glue's callbacks are
// answered here (as the Python harness does): nlr_push/nlr_pop, call_method_n_kw (readinto/seek
// of the benchmark's source and old file), native_from_obj/native_to_obj (small ints).
import { readFileSync, writeFileSync } from 'node:fs';
import { RP2040 } from 'rp2040js';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const mcu = new RP2040();
const core = mcu.core;
const sram = readFileSync(job.sram);
mcu.sram.set(sram);
const SRAM = 0x20000000;
const rd32 = (a) => core.readUint32(a);
const wr32 = (a, v) => core.writeUint32(a, v >>> 0);

const hooks = new Map(Object.entries(job.hooks).map(([name, addr]) => [addr, name]));
const streams = new Map();
for (const s of job.streams) {
  streams.set(s.readinto, { data: readFileSync(s.data), pos: 0 });
  if (s.seek) streams.set(s.seek, { seekOf: s.readinto });
}
const smallInt = (v) => ((v << 1) | 1) >>> 0;

function hook(name) {
  const r = core.registers;
  switch (name) {
    case 'nlr_push': return 0;
    case 'nlr_pop': return 0;
    case 'native_from_obj': return (r[0] | 0) >> 1; // small int
    case 'native_to_obj': return smallInt(r[0]);
    case 'call_method_n_kw': {
      const a = r[2];
      const meth = rd32(a), arg = rd32(a + 8);
      const s = streams.get(meth);
      if (!s) throw new Error('call_method_n_kw on unknown method 0x' + meth.toString(16));
      if (s.seekOf !== undefined) { streams.get(s.seekOf).pos = arg >>> 1; return 6; } // seek(small int) -> None
      const n = rd32(arg + 8), items = rd32(arg + 12);
      const k = Math.max(0, Math.min(n, s.data.length - s.pos));
      for (let i = 0; i < k; i++) core.writeUint8(items + i, s.data[s.pos + i]);
      s.pos += k;
      return smallInt(k);
    }
    default: throw new Error('mp_fun_table.' + name + ' not handled in rp2040js');
  }
}

const out = [];
function run(c) {
  for (let i = 0; i < 4; i++) core.registers[i] = (c.args[i] ?? 0) >>> 0;
  // arguments after the fourth on the stack (AAPCS), 8-byte aligned
  const extra = c.args.slice(4);
  const sp = (job.sp - 4 * extra.length) & ~7;
  extra.forEach((v, i) => wr32(sp + 4 * i, v));
  core.SP = sp >>> 0;
  core.LR = job.ret | 1;
  core.PC = c.fn & ~1;
  const c0 = core.cycles;
  let n = 0;
  for (;;) {
    const pc = core.PC;
    if (pc === job.ret) break;
    const h = hooks.get(pc);
    if (h !== undefined) {
      core.registers[0] = hook(h) >>> 0;
      core.PC = core.LR & ~1;
      continue;
    }
    if (pc < SRAM || pc >= SRAM + 0x42000) throw new Error('pc out of SRAM: 0x' + pc.toString(16));
    core.executeInstruction();
    n++;
  }
  return { cycles: core.cycles - c0, instructions: n, r0: core.registers[0] };
}
// A call with `until_zero` is repeated (a readinto loop) until it returns 0 or an error (< 0).
for (const c of job.calls) {
  for (let k = 0; k < (c.until_zero ? 1e6 : 1); k++) {
    const r = run(c);
    out.push(r);
    if (c.until_zero && (r.r0 === 0 || r.r0 >= 0x80000000)) break;
  }
}
writeFileSync(job.sram_out, mcu.sram.subarray(0, sram.length));
process.stdout.write(JSON.stringify({ calls: out }));
