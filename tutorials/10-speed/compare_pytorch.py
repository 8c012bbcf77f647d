#!/usr/bin/python3
# Attend against PyTorch, one after the other, on the same model and data
# (chapter 10, docs/10-speed.md, "Measured against PyTorch"). Not needed to
# build or test Attend; needs Debian's python3-torch and, for a fair
# yardstick, an optimised BLAS: `apt-get install python3-torch libopenblas0-pthread`.
#
# The PyTorch side is tutorials/08-translation/pytorch_baseline.py (the same
# model, tokenizer, batching, optimiser and schedule). This script only runs
# it and `attend train` with the same settings and reads their progress lines:
#
#   ms/step    the time between the progress lines of step 50 and of the last
#              step, divided by the steps between them (program start, data
#              loading and the first 50 steps are not counted; no validation)
#   tokens/s   as each program prints it at its last step (source + target
#              input tokens, counted alike by both)
#   peak RSS   the child's maximum resident set (wait4's ru_maxrss)
#
# The BLAS: Debian's OpenBLAS 0.3.21 does not know recent CPUs (AMD Zen 5)
# and falls back to its generic "Prescott" kernels, 5 times slower than its
# AVX-512 ("SkylakeX") ones. The script asks OpenBLAS which kernels it chose
# (openblas_get_corename through ctypes) and, if they are a generic fallback,
# sets OPENBLAS_CORETYPE to the best the CPU runs, as a user who compares
# would. PyTorch has two thread counts, its own (torch.set_num_threads, the
# baseline's --threads) and OpenBLAS's (OPENBLAS_NUM_THREADS): each setting
# in --torch-threads is "intra-op:blas".
#
#   tutorials/10-speed/compare_pytorch.py --config toy --data toy_train.tsv --steps 200
#   tutorials/10-speed/compare_pytorch.py --config d256 --data pairs.tsv --steps 200
#   tutorials/10-speed/compare_pytorch.py --matmul        (torch.mm at the models' shapes)
#
# tutorials/10-speed/compare_pytorch.sh runs both configs after building.
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BASELINE = os.path.join(ROOT, "tutorials", "08-translation", "pytorch_baseline.py")
# Debian's torch is installed for the system's Python, which may not be the
# first python3 on the PATH (pyenv, a virtual environment).
TORCH_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

CONFIGS = {
    "toy": {"d-model": 128, "heads": 4, "layers": 2, "ff": 512},   # the default toy-French model
    "d256": {"d-model": 256, "heads": 4, "layers": 3, "ff": 512},  # the larger model of docs/10
}

# OpenBLAS's generic kernels, chosen when it does not recognise the CPU.
GENERIC_CORES = {"prescott", "core2", "katmai", "coppermine", "northwood", "banias", "atom", "unknown"}

# Prints the OpenBLAS core of the process's BLAS (torch loads it as libblas.so.3
# through Debian's alternatives, so look for whichever loaded file is OpenBLAS).
CORE_PROBE = r"""
import ctypes, torch
torch.ones(2, 2) @ torch.ones(2, 2)
libs = sorted({l.split()[-1] for l in open('/proc/self/maps') if '.so' in l and ('blas' in l or 'lapack' in l)})
for path in libs:
    try:
        lib = ctypes.CDLL(path)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        print(lib.openblas_get_corename().decode(), path)
        break
    except (OSError, AttributeError):
        continue
else:
    print('not-OpenBLAS', ','.join(libs) or 'none')
"""


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def blas_core(env):
    """(core name, library path) as OpenBLAS reports them under `env`."""
    out = subprocess.run([TORCH_PYTHON, "-c", CORE_PROBE], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("compare_pytorch: cannot import torch (apt-get install python3-torch):\n" + out.stderr)
    name, _, path = out.stdout.strip().partition(" ")
    return name, path


def choose_blas(env, how):
    """Sets OPENBLAS_CORETYPE in env as `how` says; returns a line saying what was chosen and why.

    how: "best" (OpenBLAS's own choice, unless that is a generic fallback: then
    the best core this CPU runs), "keep" (the environment's OPENBLAS_CORETYPE,
    if any) or a core name (e.g. SkylakeX, Haswell)."""
    inherited = env.get("OPENBLAS_CORETYPE")
    if how == "keep":
        core, path = blas_core(env)
        return f"BLAS: {path}, core {core}" + (f" (OPENBLAS_CORETYPE={inherited} kept)" if inherited else "")
    if how != "best":
        env["OPENBLAS_CORETYPE"] = how
        core, path = blas_core(env)
        return f"BLAS: {path}, core {core} (OPENBLAS_CORETYPE={how} from --blas-core)"
    env.pop("OPENBLAS_CORETYPE", None)
    auto, path = blas_core(env)
    note = f"; the environment's OPENBLAS_CORETYPE={inherited} is not used (--blas-core keep uses it)" if inherited else ""
    if auto.lower() not in GENERIC_CORES:
        return f"BLAS: {path}, core {auto} (OpenBLAS's own choice{note})"
    flags = cpu_flags()
    best = "SkylakeX" if {"avx512f", "avx512bw", "avx512vl"} <= flags else "Haswell" if "avx2" in flags else None
    if best is None:
        return f"BLAS: {path}, core {auto} (generic; this CPU has no AVX2 kernels to choose instead{note})"
    env["OPENBLAS_CORETYPE"] = best
    core, _ = blas_core(env)
    return (f"BLAS: {path}, core {core}: OPENBLAS_CORETYPE={best} set by this script "
            f"(OpenBLAS's own choice was the generic {auto}{note})")


STEP_LINE = re.compile(r"^step (\d+)\b.*?(\d+) tok/s")


def run_measured(name, cmd, env, verbose):
    """Runs cmd, timestamps its progress lines; returns ms/step, tokens/s, peak MiB."""
    start = time.monotonic()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1)
    steps = []  # (step, arrival time, tokens/s)
    tail = []
    for line in child.stdout:
        now = time.monotonic()
        line = line.rstrip("\n")
        tail = (tail + [line])[-20:]
        if verbose:
            print(f"  [{name}] {line}", flush=True)
        m = STEP_LINE.match(line)
        if m:
            steps.append((int(m.group(1)), now, float(m.group(2))))
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or len(steps) < 2:
        sys.exit(f"compare_pytorch: {name} failed ({' '.join(cmd)}):\n" + "\n".join(tail))
    (s0, t0, _), (s1, t1, tokens) = steps[0], steps[-1]
    return {"ms_per_step": 1000.0 * (t1 - t0) / (s1 - s0), "tokens_per_s": tokens,
            "peak_mib": usage.ru_maxrss / 1024.0, "wall_s": time.monotonic() - start,
            "steps": f"{s0}-{s1}"}


def compare_training(a):
    if a.steps < 100 or a.steps % 50:
        sys.exit("compare_pytorch: --steps must be a multiple of 50, at least 100 (progress lines come every 50)")
    env = dict(os.environ)
    blas_line = ("BLAS: not used (--torch-threads none)" if a.torch_threads == "none"
                 else choose_blas(env, a.blas_core))
    config = CONFIGS[a.config]
    model_args = [x for k, v in config.items() for x in (f"--{k}", str(v))]
    common = ["--steps", str(a.steps), "--seed", "1"] + model_args
    data = a.data
    tmp = tempfile.mkdtemp(prefix="compare_pytorch.")
    if a.max_pairs:
        data = os.path.join(tmp, "pairs.tsv")
        with open(a.data, encoding="utf-8") as f, open(data, "w", encoding="utf-8") as out:
            for i, line in enumerate(f):
                if i >= a.max_pairs:
                    break
                out.write(line)
    with open(data, encoding="utf-8") as f:
        pairs = sum(1 for line in f if line.strip())
    print(f"config {a.config}: d_model {config['d-model']}, {config['heads']} heads, "
          f"{config['layers']}+{config['layers']} layers, feed-forward {config['ff']}, batch 64; "
          f"{pairs} pairs from {a.data}; {a.steps} steps, ms/step timed from step 50 to {a.steps}")
    print(blas_line)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start "
          "(time only on an idle machine)", flush=True)

    rows = []
    for setting in ([] if a.torch_threads == "none" else a.torch_threads.split(",")):
        intra, _, blas = setting.partition(":")
        blas = blas or intra
        e = dict(env, OPENBLAS_NUM_THREADS=blas, OMP_NUM_THREADS=intra)
        cmd = [TORCH_PYTHON, BASELINE, "--train", data, "--threads", intra] + common
        rows.append((f"pytorch", f"intra-op {intra}, blas {blas}", run_measured("pytorch", cmd, e, a.verbose)))
        print_row(*rows[-1])
    for threads in a.attend_threads.split(","):
        out = os.path.join(tmp, f"attend-{threads}.safetensors")
        cmd = [a.attend, "train", "--data", data, "--threads", threads, "--eval-every", "0",
               "--checkpoint-every", "0", "--out", out] + common
        rows.append(("attend", f"{threads} threads", run_measured("attend", cmd, env, a.verbose)))
        print_row(*rows[-1])
    attend = [r[2]["ms_per_step"] for r in rows if r[0] == "attend"]
    if len(attend) > 1:
        print(f"attend: {attend[0] / min(attend[1:]):.2f}x from the first thread count to the best other")
    if a.torch_threads != "none":
        best = {p: min(r[2]["ms_per_step"] for r in rows if r[0] == p) for p in ("pytorch", "attend")}
        print(f"best ms/step: pytorch {best['pytorch']:.1f}, attend {best['attend']:.1f}: "
              f"attend is {best['pytorch'] / best['attend']:.2f}x as fast", flush=True)


def print_row(program, setting, r):
    if not getattr(print_row, "header", False):
        print(f"\n{'program':8} {'threads':22} {'ms/step':>9} {'tokens/s':>9} {'peak RSS MiB':>13} {'wall s':>8}")
        print("-" * 74)
        print_row.header = True
    print(f"{program:8} {setting:22} {r['ms_per_step']:9.1f} {r['tokens_per_s']:9.0f} {r['peak_mib']:13.0f} "
          f"{r['wall_s']:8.1f}", flush=True)


# torch.mm / torch.bmm at the shapes tutorial 10 times (its `new` column is Attend).
MATMUL_SHAPES = [
    ("256^3", 1, 256, 256, 256), ("512^3", 1, 512, 512, 512), ("1024^3", 1, 1024, 1024, 1024),
    ("ffn up (832x128)(128x512)", 1, 832, 128, 512), ("ffn down (832x512)(512x128)", 1, 832, 512, 128),
    ("proj (832x128)(128x128)", 1, 832, 128, 128), ("scores 256x(15x32)(32x15)", 256, 15, 32, 15),
    ("mix 256x(15x15)(15x32)", 256, 15, 15, 32), ("d256 proj (832x256)(256x256)", 1, 832, 256, 256),
    ("d256 ffn up (832x256)(256x512)", 1, 832, 256, 512), ("d256 ffn down (832x512)(512x256)", 1, 832, 512, 256),
    ("d256 scores 256x(15x64)(64x15)", 256, 15, 64, 15),
]


def matmul_child(threads):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    for name, batch, m, k, n in MATMUL_SHAPES:
        a, b = torch.rand(batch, m, k) * 2 - 1, torch.rand(batch, k, n) * 2 - 1
        f = (lambda: torch.mm(a[0], b[0])) if batch == 1 else (lambda: torch.bmm(a, b))
        f()
        rounds = []
        for _ in range(7):  # median of 7 rounds of at least 50 ms
            calls, t0 = 0, time.perf_counter()
            while True:
                f()
                calls += 1
                if time.perf_counter() - t0 >= 0.05:
                    break
            rounds.append((time.perf_counter() - t0) / calls)
        seconds = sorted(rounds)[3]
        print(f"{name:34} {threads:4d} {2.0 * batch * m * k * n / seconds / 1e9:9.2f}", flush=True)


def compare_matmul(a):
    env = dict(os.environ)
    print(choose_blas(env, a.blas_core))
    print(f"{'shape':34} {'thr':>4} {'GFLOP/s':>9}   (torch.mm / torch.bmm; compare tutorial 10's `new` column)")
    for threads in a.attend_threads.split(","):
        e = dict(env, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        subprocess.run([TORCH_PYTHON, os.path.abspath(__file__), "--matmul-child", threads], env=e, check=True)


def main():
    p = argparse.ArgumentParser(description="Attend against PyTorch on the same model and data.")
    p.add_argument("--config", choices=sorted(CONFIGS), default="toy")
    p.add_argument("--data", help="training pairs, source<TAB>target (e.g. `attend data --n 200000`)")
    p.add_argument("--max-pairs", type=int, default=0, help="use only the first N lines of --data")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--torch-threads", default="1:1,1:2,2:2", help="PyTorch settings, intra-op:blas, comma-separated; none: Attend only")
    p.add_argument("--attend-threads", default="1,2", help="Attend's thread counts, comma-separated")
    p.add_argument("--blas-core", default="best",
                   help="best (default: OpenBLAS's choice unless generic, then the best this CPU runs), "
                        "keep (the environment's OPENBLAS_CORETYPE) or a core name such as SkylakeX")
    p.add_argument("--attend", default=os.path.join(ROOT, "build", "attend"))
    p.add_argument("--matmul", action="store_true", help="time torch.mm at the models' shapes instead")
    p.add_argument("--matmul-child", help=argparse.SUPPRESS)
    p.add_argument("--verbose", action="store_true", help="echo the programs' output")
    a = p.parse_args()
    if a.matmul_child:
        matmul_child(int(a.matmul_child))
    elif a.matmul:
        compare_matmul(a)
    else:
        if not a.data:
            sys.exit("compare_pytorch: need --data FILE.tsv (e.g. build/attend data --n 200000 > toy_train.tsv)")
        compare_training(a)


if __name__ == "__main__":
    main()
