"""Fuzz the `qcc` command line with hostile inputs and classify every run (issue 17).

Each case takes one sample or MLPerf Tiny model, applies ONE mutation (to the ONNX
bytes, an ONNX protobuf field, the calibration file, a CLI option, the output path
or external data), runs `python -m qcompiler ...` in a fresh sandbox folder
(timeout + address-space limit), and classifies the run, worst first:

    outside-write   a file created or changed outside -o (the sandbox is snapshotted
                    before/after; every path a case can escape to lies inside it)
    signal          killed by a signal (SIGSEGV, SIGFPE, SIGABRT, ...)
    memory          an allocation failure that is not a clean `qcc: error:`
    timeout         still running after --timeout seconds
    silently-wrong  exit 0, but the emitted model disagrees with onnxruntime on the
                    mutated model (relative error > 0.3 of the reference output range),
                    declares output sizes that differ from the computed ones, fails to
                    run in LiteRT, or its C source does not compile with -Werror
    outside-read    exit 0 although external data lies outside the model's folder
    traceback       a Python traceback (qcc's "internal error", exit 70)
    leftover        a `.qcc-` temp folder, a file in TMPDIR, partial output in -o
    warned          (not bad) exit 0 in data-free mode, outside the tolerance, after qcc's
                    warning that data-free ranges are estimates
                    after a failure, or unrelated files in -o changed
    unclear         a failure whose stderr is not qcc's own one-line error: usage
                    dumps, ANSI colours, numpy / onnxruntime / TFLM log lines,
                    "allow_pickle" advice, no `qcc: error:` line
    noisy           exit 0 and a correct model, but foreign lines in stderr
    clean-error     non-zero exit, one `qcc: error:` line (qcc's own warnings allowed)
    ok              exit 0, output checked (or not checkable: see `check`)

Every case is reproducible from (seed, case index, model list):

    python tools/fuzz.py --seed 1 --cases 1500 --out /tmp/fuzz        # a campaign
    python tools/fuzz.py --seed 1 --case 17 --keep /tmp/case17        # one case, kept

Output: DIR/cases.jsonl (one JSON line per case) and DIR/summary.md (class counts,
an example per class, distinct causes grouped by last traceback frame / message).

Only the standard library, numpy, onnx and onnxruntime are imported here. The
emitted .tflite is run in LiteRT (qcc's `tflite` extra) in a child process, so a
crash there is classified instead of killing the fuzzer.

Modules, in the order a case goes through them: models (the models and their calibration
data), case (Case, the mutator context Ctx, .npy/.npz and proto helpers), mutate_fields and
mutate_graph (ONNX protobuf fields), mutate_files (ONNX bytes, calibration files),
mutate_cli (options, -o, external data), build (families, build_case), sandbox (materialize,
snapshot, run with limits, normalize), classify, check (the silently-wrong check), summary
and driver (the command line, tools/fuzz.py).
"""
