"""The mistakes the recurrent method's fast tests must catch, each applied to a copy.

usage (repository root): python -m tests.methods.recurrent.mutants [TEST_FILE ...]
Each mutation is one text replacement in a fresh copy of src/ and tests/ (in a temporary
folder; the working tree is never touched); the fast tests (default: test_algorithm.py and
test_loss.py) run on the copy, and the tests that fail are listed. A mutation none fails is a
gap in the tests.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[3]
R = "src/posegroup/methods/recurrent/"
MUTATIONS = {
    "M1 min_steps=z (under-count loses final stop target)": (R+"__init__.py", "min_steps=z + 1", "min_steps=z"),
    "M2 fed-back heatmaps detached": (R+"head.py", "torch.cat([feats, heat], 1)", "torch.cat([feats, heat.detach()], 1)"),
    "M3a candidate-local index for the step": (R+"loss.py", "pairs.extend((steps[a], m)", "pairs.extend((a, m)"),
    "M3b chunk-local index for the step": (R+"loss.py", "pairs.extend((steps[a], m)", "pairs.extend((steps[0] + a, m)"),
    "M4a matching chunk T+1 (loss)": (R+"loss.py", "chunk_ends(probs[i, :length], bptt_steps=bptt_steps,", "chunk_ends(probs[i, :length], bptt_steps=bptt_steps + 1,"),
    "M4b detach chunk T+1 (unroll)": (R+"head.py", "cut = chunk_end(t, below, bptt_steps, cut_at_stop)", "cut = chunk_end(t, below, bptt_steps + 1 if bptt_steps else None, cut_at_stop)"),
    "M5a ignore mask dropped from heatmap error": (R+"loss.py", "        err = err * mask[None, None]\n", "        pass\n"),
    "M5b ignore mask dropped from matching": (R+"loss.py", "m.detach() if (m is not None and mask_matching) else None", "None"),
    "M5c ignore mask dropped from stop targets": (R+"loss.py", "m.detach() if (m is not None and mask_stop) else None", "None"),
    "M5d ignore mask not read from the batch": (R+"__init__.py", 'gt, mask = batch["person_heatmaps"], batch.get("mask")', 'gt, mask = batch["person_heatmaps"], None'),
    "M6 stop_targets(z, z_hat) swapped": (R+"loss.py", "target = stop_targets(z_hat, z)[:length]", "target = stop_targets(z, z_hat)[:length]"),
    "M7a heatmap loss detached": (R+"loss.py", "    return per_person.sum()\n", "    return per_person.sum().detach()\n"),
    "M7b stop loss detached": (R+"loss.py", "F.binary_cross_entropy_with_logits(stop_logits[i, :length],", "F.binary_cross_entropy_with_logits(stop_logits[i, :length].detach(),"),
    "X1 LSTM2 input always detached": (R+"__init__.py", "src = heats.detach() if s.lstm2_detach_input else heats", "src = heats.detach()"),
    "X2 RunningNorm updated twice with LSTM2": (R+"__init__.py", "out = net.head.refine(x, inputs, normalized=True)", "out = net.head.refine(x, inputs)"),
    "X3 no cut at stop events in unroll": (R+"head.py", "return ends | stopped.bool() if cut_at_stop else ends", "return ends"),
}


def main(tests) -> int:
    survivors = 0
    for name, (path, old, new) in MUTATIONS.items():
        with tempfile.TemporaryDirectory() as tmp:
            failed, tail = run_one(Path(tmp), path, old, new, tests)
        survivors += not failed
        print(f"{name}: {tail}" + ("  <- NOT CAUGHT" if not failed else ""))
        for t in failed:
            print("    ", t.split("::", 1)[1])
        sys.stdout.flush()
    return survivors


def run_one(dst: Path, path: str, old: str, new: str, tests) -> tuple[list, str]:
    """Apply one mutation in a copy at ``dst``, run ``tests`` there: (failed test ids, summary)."""
    for item in ("src", "tests", "pyproject.toml"):
        (shutil.copytree if (SRC / item).is_dir() else shutil.copy)(SRC / item, dst / item)
    f = dst / path
    text = f.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{path}: the text to mutate occurs {text.count(old)} times (the code moved on)")
    f.write_text(text.replace(old, new))
    env = dict(os.environ, PYTHONPATH=str(dst / "src"), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=dst, env=env,
                       capture_output=True, text=True)
    failed = sorted(set(re.findall(r"FAILED (\S+?)(?: - |\n|$)", r.stdout)))
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
    return failed, tail


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["tests/methods/recurrent/test_algorithm.py", "tests/methods/recurrent/test_loss.py"]))
