"""CUDA paths, checked and timed on a GPU machine (skips itself without one).

1. Extraction on CUDA in float32 equals the CPU result; float16/bfloat16 autocast
   stay close; Layerscope's extraction vs a bare `output_hidden_states` loop on the GPU.
2. Out-of-memory handling: with the allocator capped, a batch that does not fit is
   halved and retried, and the result still equals the uncapped one.
3. Batched probes on CUDA agree with the CPU path; time of each.
4. Layer-by-layer linear CKA on CUDA agrees with the CPU; time of each.
5. A TopK SAE trained on CUDA and on the CPU with the same config: time and held-out FVE.

    python bench/gpu.py [--model minilm] [--inputs 864]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import core  # noqa: E402
from results import result  # noqa: E402


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def extraction(model_name: str, data, folder: str) -> dict:
    gpu = core.load_model(model_name, device="cuda")
    cpu = core.load_model(model_name, device="cpu")
    results = {}
    ref, t_cpu = timed(lambda: core.extract(cpu, data, store=core.Store(f"{folder}/cpu"), batch_size=64))
    print(f"cpu float32 extraction: {t_cpu:.2f} s")
    for dtype in ("float32", "float16", "bfloat16"):
        acts, t = timed(lambda: core.extract(gpu, data, dtype=dtype, store=core.Store(f"{folder}/{dtype}"), batch_size=64))
        worst = max(
            float(np.abs(np.asarray(acts[layer]) - np.asarray(ref[layer])).max() / (np.abs(np.asarray(ref[layer])).max()))
            for layer in ref.layer_names
        )
        results[dtype] = (t, worst)
        print(f"cuda {dtype:9s} extraction: {t:.2f} s, max |gpu - cpu| / max|cpu| over layers = {worst:.2e}")
        tolerance = 1e-5 if dtype == "float32" else 2e-2
        result(f"cuda {dtype} extraction, max relative difference to the CPU", f"{worst:.2e}", f"<= {tolerance:g}",
               worst <= tolerance)

    # bare loop on the same sorted batches
    ids = gpu.tokenizer(data.texts, truncation=True, max_length=gpu.max_length)["input_ids"]
    order = np.argsort([-len(x) for x in ids], kind="stable")
    batches = []
    for start in range(0, len(order), 64):
        padded = gpu.tokenizer.pad({"input_ids": [ids[i] for i in order[start : start + 64]]}, return_tensors="pt")
        batches.append({k: v.cuda() for k, v in padded.items()})

    def bare():
        with torch.inference_mode():
            for batch in batches:
                hidden = gpu.module(**batch, output_hidden_states=True).hidden_states
                [h.float().cpu() for h in hidden]  # the bare loop also brings the states to the host

    bare()
    _, t_bare = timed(bare)
    _, t_ours = timed(lambda: core.extract(gpu, data, store=core.Store(tempfile.mkdtemp(dir=folder)), batch_size=64))
    print(f"cuda float32: layerscope {t_ours:.2f} s vs bare loop {t_bare:.2f} s, ratio {t_ours / t_bare:.2f}")

    # out of memory: cap the allocator so a batch of 512 cannot fit, then check halving
    torch.cuda.empty_cache()
    free = torch.cuda.mem_get_info()[0]
    cap = (torch.cuda.memory_reserved() + 150 * 2**20) / torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(cap)
    try:
        capped, t_cap = timed(lambda: core.extract(gpu, data, store=core.Store(f"{folder}/capped"), batch_size=512))
        worst = max(float(np.abs(np.asarray(capped[name]) - np.asarray(ref[name])).max()) for name in ref.layer_names)
        print(f"out-of-memory halving: batch 512 under a cap of 150 MiB above the reserved memory completed in {t_cap:.2f} s; "
              f"max |capped - cpu| = {worst:.2e} (free before cap {free / 2**30:.1f} GiB)")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    return {"cpu": ref}


def probes(acts, labels) -> None:
    from core.analysis.probes import probe_accuracy_by_layer

    cpu, t_cpu = timed(lambda: probe_accuracy_by_layer(acts, labels, device="cpu"))
    gpu, t_gpu = timed(lambda: probe_accuracy_by_layer(acts, labels, device="cuda"))
    diff = float(np.abs(np.asarray(cpu.mean) - np.asarray(gpu.mean)).max())
    print(f"probes ({len(acts.layer_names)} layers x 5 folds + control): cpu {t_cpu:.2f} s, cuda {t_gpu:.2f} s, "
          f"speed-up {t_cpu / t_gpu:.1f}x, max accuracy difference {100 * diff:.2f} points")
    result("probe accuracy, cuda vs cpu", f"{100 * diff:.2f} points", "<= 1 point", diff <= 0.01)


def cka(acts) -> None:
    from core.analysis.similarity import similarity_matrix

    cpu, t_cpu = timed(lambda: similarity_matrix(acts, acts, "linear_cka", device="cpu", max_points=None))
    gpu, t_gpu = timed(lambda: similarity_matrix(acts, acts, "linear_cka", device="cuda", max_points=None))
    diff = float(np.nanmax(np.abs(cpu.matrix - gpu.matrix)))
    print(f"linear CKA {cpu.matrix.shape} on n={cpu.n}: cpu {t_cpu:.2f} s, cuda {t_gpu:.2f} s, "
          f"speed-up {t_cpu / t_gpu:.1f}x, max |difference| {diff:.1e}")
    result("linear CKA, cuda vs cpu", f"{diff:.1e}", "<= 1e-6", diff <= 1e-6)


def sae(model_name: str, data, folder: str) -> None:
    from core.analysis.sae import SAEConfig, train_sae_on_run

    acts = core.extract(model_name, data, layers=["encoder.layer.3"], pooling="tokens", store=core.Store(f"{folder}/tok"))
    config = SAEConfig(architecture="topk", expansion=8, k=32, training_tokens=2_000_000, batch_size=4096, seed=0)
    for device in ("cuda", "cpu"):
        stored, t = timed(lambda: train_sae_on_run(acts, "encoder.layer.3", config,
                                                   store=core.Store(f"{folder}/sae-{device}"), device=device))
        e = stored.evaluation
        print(f"TopK SAE 8x (d_sae={8 * acts.dim('encoder.layer.3')}), k=32, 2M training tokens on {device}: {t:.1f} s, "
              f"held-out FVE {e.fve:.3f}, L0 {e.l0:.1f}, dead share {e.dead_share:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="bundled name or a Hugging Face folder")
    parser.add_argument("--inputs", type=int, default=864)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  %(levelname)s %(name)s: %(message)s")
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        result("CUDA checks", "skipped (no CUDA device)", "a CUDA device", False)
        return
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    data = core.load_dataset("demo:sentences", limit=args.inputs)
    with tempfile.TemporaryDirectory() as folder:
        ref = extraction(args.model, data, folder)["cpu"]
        probes(ref, data.table["topic"].to_numpy())
        cka(ref)
        sae(args.model, data, folder)


if __name__ == "__main__":
    main()
