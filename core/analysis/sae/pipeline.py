"""An SAE on one layer of a tokens run, from start to store: train or import, evaluate, write the entry.

`train_sae_on_run` splits the run's inputs into training and held-out parts, trains on the
first, evaluates on the second (with the run's own causal LM, also the next-token losses)
and stores the result; `import_saelens` does the same for an SAE trained elsewhere,
evaluated on all the run's inputs. The same request a second time reads the store.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.analysis.sae.batches import activation_batches, check_tokens_run, held_out_split, token_rows
from core.analysis.sae.config import SAEConfig
from core.analysis.sae.entries import SAE_VERSION, StoredSAE, has_sae, imported_sae_key, open_sae, sae_key, write_sae
from core.analysis.sae.evaluation import SAEEvaluation, evaluate_sae, next_token_losses
from core.analysis.sae.model import SparseAutoencoder
from core.analysis.sae.hook_names import module_for_hook
from core.analysis.sae.saelens import CFG_FILENAME, MODULE_KEY, WEIGHTS_FILENAME, load_saelens
from core.analysis.sae.trainer import SAETrainer, SAETrainingStopped, TrainProgress
from core.device import pick_device
from core.errors import LayerscopeError
from core.store import Store, file_sha256

if TYPE_CHECKING:
    from core.activations import Activations
    from core.models import LoadedModel

logger = logging.getLogger(__name__)


def evaluate_on_run(
    sae: SparseAutoencoder,
    acts: Activations,
    layer: str,
    inputs: np.ndarray,
    *,
    exclude_first_token: bool,
    model: LoadedModel | None = None,
    loss_texts: int = 64,
    batch_size: int = 4096,
    device: str | torch.device | None = None,
) -> SAEEvaluation:
    """Evaluate `sae` on the tokens of `inputs` of a run; with a causal LM, also the next-token losses."""
    rows = token_rows(acts, inputs, exclude_first_token=exclude_first_token)
    result = evaluate_sae(
        sae, activation_batches(acts[layer], rows, batch_size=batch_size, epochs=1, shuffle=False), device=device
    )
    if model is not None and acts.meta["model"].get("is_causal_lm"):
        _check_model_for_run(model, acts)
        all_texts = acts.texts  # read the run's table once
        texts = [all_texts[i] for i in inputs[:loss_texts]]
        losses = next_token_losses(sae, model, layer, texts, max_length=acts.meta.get("max_length"),
                                   exclude_first_token=exclude_first_token)
        result = SAEEvaluation(**{**asdict(result), "loss_clean": losses["clean"], "loss_with_sae": losses["sae"],
                                  "loss_zero_ablation": losses["zero"], "n_loss_texts": losses["n_texts"]})
    return result


def train_sae_on_run(
    acts: Activations,
    layer: str,
    config: SAEConfig,
    *,
    store: Store | None = None,
    device: str | torch.device | None = None,
    model: LoadedModel | None = None,
    loss_texts: int = 64,
    progress: TrainProgress | None = None,
) -> StoredSAE:
    """Train an SAE on `layer` of a tokens run, evaluate it on held-out inputs and store it.

    The same run, layer and config a second time read the store. `model` (the run's own causal
    LM) adds the next-token losses to the evaluation. Nothing is written unless training ends:
    a cancel raised from `progress` leaves the workspace as it was. A non-finite loss stores
    the last good checkpoint (its meta says why training stopped) and raises SAETrainingStopped.
    """
    store = store or Store()
    check_tokens_run(acts, layer)
    d_in = acts.dim(layer)
    config.check_for(d_in)
    key = sae_key(acts.key, layer, config)
    if has_sae(store, key):
        try:
            return open_sae(store, key)
        except LayerscopeError as err:
            logger.warning("%s; training again", err)
    train_inputs, held_inputs = held_out_split(acts.n_inputs, config.held_out_fraction, config.seed)
    train_rows = token_rows(acts, train_inputs, exclude_first_token=config.exclude_first_token)
    if train_rows.size == 0:
        raise LayerscopeError(
            f"run {acts.key} has no training tokens left (inputs of one token, first tokens excluded)"
        )
    batches = activation_batches(acts[layer], train_rows, batch_size=config.batch_size, seed=config.seed)
    start = time.time()
    stopped: SAETrainingStopped | None = None
    try:
        sae, history = SAETrainer(config, d_in, device=device, info=_run_info(acts, layer)).fit(
            batches, progress=progress)
    except SAETrainingStopped as err:
        if err.sae is None:
            raise
        stopped, sae, history = err, err.sae, err.history
    seconds = time.time() - start
    evaluation = evaluate_on_run(sae, acts, layer, held_inputs, exclude_first_token=config.exclude_first_token,
                                 model=model, loss_texts=loss_texts, device=device)
    meta = {
        **_entry_meta(acts, layer, sae),
        "source": "trained",
        "config": config.as_dict(),
        "exclude_first_token": config.exclude_first_token,
        "evaluation": evaluation.as_dict(),
        "held_out_inputs": int(held_inputs.size),
        "training": {"seconds": seconds, "stopped": history.stopped, "steps": history.steps,
                     "tokens": int(history.tokens[-1]) if history.tokens else 0,
                     "norm_scaling_factor": history.norm_scaling_factor, "resampled": history.resampled,
                     "device": str(pick_device(device))},
    }
    write_sae(store, key, sae, meta, history.as_arrays())
    entry = open_sae(store, key)
    if stopped is not None:
        raise SAETrainingStopped(f"{stopped}; it is stored as SAE {key}", entry.sae, entry.history)
    return entry


def import_saelens(
    folder: str | os.PathLike,
    acts: Activations,
    layer: str,
    *,
    store: Store | None = None,
    model: LoadedModel | None = None,
    exclude_first_token: bool = True,
    device: str | torch.device | None = None,
) -> StoredSAE:
    """Copy an SAELens folder into the workspace as an SAE of `layer` of a tokens run, evaluated on all its inputs.

    Raises LayerscopeError when the folder is not a readable SAELens SAE or its d_in differs
    from the layer's width.
    """
    store = store or Store()
    check_tokens_run(acts, layer)
    sae = load_saelens(folder)
    width = acts.dim(layer)
    if sae.d_in != width:
        raise LayerscopeError(
            f"the SAE in {str(folder)!r} takes d_in={sae.d_in} but layer {layer!r} of run {acts.key} "
            f"({acts.model_name}) is {width} wide; pick the layer (and model) it was trained on"
        )
    # the module path the file names, else the run's layer its TransformerLens hook names
    trained_at = sae.info.get(MODULE_KEY) or module_for_hook(sae.info.get("hook_name"), acts.layer_names)
    if trained_at is not None and trained_at != layer:
        raise LayerscopeError(
            f"the SAE in {str(folder)!r} was trained at {sae.info.get('hook_name')!r}, which is layer "
            f"{trained_at!r} of run {acts.key}, not {layer!r}; import it for layer {trained_at!r}"
        )
    source = Path(folder).expanduser()
    digest = "".join(file_sha256(source / name) for name in (CFG_FILENAME, WEIGHTS_FILENAME))
    key = imported_sae_key(digest, acts.key, layer, exclude_first_token)
    if has_sae(store, key):
        return open_sae(store, key)
    sae.info = {**sae.info, "imported_from": str(source.resolve()), "run": acts.key}
    evaluation = evaluate_on_run(sae, acts, layer, np.arange(acts.n_inputs), exclude_first_token=exclude_first_token,
                                 model=model, device=device)
    meta = {
        **_entry_meta(acts, layer, sae),
        "source": "imported",
        "imported_from": sae.info["imported_from"],
        "hook_name": sae.info.get("hook_name"),
        "trained_on_model": sae.info.get("model_name"),
        "config": None,
        "exclude_first_token": exclude_first_token,
        "evaluation": evaluation.as_dict(),
        "held_out_inputs": int(acts.n_inputs),
        "training": {},
    }
    write_sae(store, key, sae, meta, {})
    return open_sae(store, key)


def _run_info(acts: Activations, layer: str) -> dict[str, Any]:
    """cfg.json metadata of an SAE trained on a run's layer (SAELens' names)."""
    first_ids = acts.token_ids[acts.offsets[:-1]]
    return {
        "model_name": acts.model_name,
        "hook_name": layer,
        "context_size": acts.meta.get("max_length"),
        "dataset_path": acts.dataset_name,
        "prepend_bos": bool(acts.n_inputs > 1 and np.unique(first_ids).size == 1),  # every input starts alike
        "run": acts.key,
    }


def _entry_meta(acts: Activations, layer: str, sae: SparseAutoencoder) -> dict[str, Any]:
    """The part of an SAE entry's meta.json that names its run, layer and shape."""
    return {
        "run": acts.key,
        "layer": layer,
        "model": acts.model_name,
        "model_weights": acts.meta["model"].get("weights"),
        "is_causal_lm": bool(acts.meta["model"].get("is_causal_lm")),
        "dataset": acts.dataset_name,
        "dataset_fingerprint": acts.meta["dataset"].get("fingerprint"),
        "architecture": sae.architecture,
        "k": sae.k,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "version": SAE_VERSION,
    }


def _check_model_for_run(model: LoadedModel, acts: Activations) -> None:
    expected = acts.meta["model"].get("weights")
    if model.weights_hash != expected:
        raise LayerscopeError(
            f"model {model.name!r} (weights {model.weights_hash[:12]}) is not the model of run {acts.key} "
            f"({acts.model_name}, weights {str(expected)[:12]}); load the run's own model for the next-token loss"
        )
