"""SAELens' on-disk format: a folder with cfg.json + sae_weights.safetensors.

Written in the SAELens 6 layout (flat ``d_in``/``d_sae``/``architecture``/``k`` plus a
``metadata`` dict; ``metadata.sae_lens_version`` >= 6 or SAELens takes its legacy path), with
the pre-6 keys (``hook_name``, ``activation_fn_kwargs``...) alongside so older readers find
them. ``hook_name`` is the layer's TransformerLens hook where it has one (hook_names.py), so
that ``HookedSAETransformer.add_sae`` finds it; ``metadata.layerscope_module`` keeps the
Hugging Face module path. Read: both layouts, every registered architecture, and TopK SAEs
trained with ``rescale_acts_by_decoder_norm`` (decoder norms folded into the weights).
Weights are float32 on the CPU.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from core.analysis.sae.architectures import architecture_class, loadable_architectures
from core.analysis.sae.hook_names import is_transformerlens_hook, saelens_hook_name
from core.analysis.sae.model import SparseAutoencoder
from core.analysis.sae.scaler import RUNTIME_NORMALIZATIONS
from core.errors import LayerscopeError
from core.store import atomic_dir

logger = logging.getLogger(__name__)

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"  # the cfg.json layout written (SAELens reads >= 6 as its own layout)
MODULE_KEY = "layerscope_module"  # metadata key holding the Hugging Face module path of the SAE's layer
_METADATA_KEYS = ("model_name", "hook_name", "hook_head_index", "prepend_bos", "context_size", "dataset_path",
                  "model_from_pretrained_kwargs", "neuronpedia_id", "sae_lens_version", "sae_lens_training_version")
# cfg.json settings Layerscope cannot reproduce: (key, value that is refused, what it means)
_UNSUPPORTED = (
    ("finetuning_scaling_factor", True, "a fine-tuning scaling factor"),
    ("reshape_activations", "hook_z", "attention hook_z reshaping"),
)


def _hook_layer(hook_name: str) -> int:
    numbers = re.findall(r"\d+", hook_name or "")
    return int(numbers[-1]) if numbers else 0


def _layout_version(version: Any) -> str:
    """The sae_lens_version to write: an imported SAE's own when it is >= 6 (the layout written), else 6.0.0."""
    try:
        return str(version) if int(str(version).split(".")[0]) >= 6 else SAELENS_FORMAT_VERSION
    except ValueError:
        return SAELENS_FORMAT_VERSION


def saelens_config(sae: SparseAutoencoder) -> dict[str, Any]:
    """cfg.json for `sae`: SAELens 6 keys, with the pre-6 keys alongside for older readers."""
    info = sae.info
    layer = str(info.get("hook_name") or "")
    # a layer Layerscope names by module path is written under its TransformerLens hook; an SAE that
    # came with a TransformerLens hook keeps it (and the module it was used on, when known)
    module = info.get(MODULE_KEY) or (None if is_transformerlens_hook(layer) else layer or None)
    hook_name = layer if is_transformerlens_hook(layer) else saelens_hook_name(layer)
    metadata = {
        "model_name": info.get("model_name"),
        "hook_name": hook_name,
        "hook_head_index": None,
        "prepend_bos": bool(info.get("prepend_bos", True)),
        "context_size": info.get("context_size"),
        "dataset_path": info.get("dataset_path"),
        "model_from_pretrained_kwargs": {},
        "neuronpedia_id": None,
        "sae_lens_version": _layout_version(info.get("sae_lens_version")),
        "sae_lens_training_version": info.get("sae_lens_training_version"),
        MODULE_KEY: module,
    }
    own = {key: value for key, value in info.items() if key not in metadata}
    if info.get("sae_lens_version") and metadata["sae_lens_version"] != str(info["sae_lens_version"]):
        own["source_sae_lens_version"] = info["sae_lens_version"]  # a pre-6 file's version, kept beside the layout's
    return {
        "architecture": sae.architecture,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": sae.normalize_activations,
        "reshape_activations": "none",
        "metadata": metadata,
        # some 6.x readers look for the version at the top level; pre-6 readers take these top-level keys
        **{key: metadata[key] for key in _METADATA_KEYS},
        "hook_layer": _hook_layer(hook_name),
        "finetuning_scaling_factor": False,
        "dataset_trust_remote_code": True,
        "seqpos_slice": [None],
        "layerscope": own,
        **sae.arch.saelens_fields(),  # activation_fn (pre-6), k (topk)...
    }


def save_saelens(sae: SparseAutoencoder, folder: str | os.PathLike) -> Path:
    """Write `sae` as an SAELens folder (cfg.json + sae_weights.safetensors), atomically; returns the folder."""
    folder = Path(folder).expanduser()
    with atomic_dir(folder) as tmp:
        write_saelens_files(sae, tmp)
    return folder


def write_saelens_files(sae: SparseAutoencoder, folder: Path) -> None:
    """Write cfg.json and sae_weights.safetensors of `sae` into an existing folder."""
    from safetensors.torch import save_file

    tensors = {name: p.detach().cpu().float().contiguous() for name, p in sae.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILENAME))
    (folder / CFG_FILENAME).write_text(json.dumps(saelens_config(sae), indent=1))


def load_saelens(folder: str | os.PathLike) -> SparseAutoencoder:
    """Read an SAELens SAE folder (cfg.json + sae_weights.safetensors) on the CPU in float32.

    Accepts SAELens 6 and pre-6 cfg.json layouts and every registered architecture (standard,
    topk, also written pre-6 as "standard" + activation_fn "topk", and jumprelu). A TopK SAE
    with ``rescale_acts_by_decoder_norm`` has its decoder norms folded into the weights (exact:
    the same latents and reconstructions as SAELens' TopKSAE). ``info`` holds the metadata,
    with ``layerscope_module`` the module path of the layer where the file names it. Raises
    LayerscopeError for a missing or unreadable file, an unsupported architecture, or weights
    whose names or shapes do not match.
    """
    folder = Path(folder).expanduser()
    cfg_path, weights_path = folder / CFG_FILENAME, folder / WEIGHTS_FILENAME
    cfg = _read_cfg(folder)
    d_in, d_sae = cfg.get("d_in"), cfg.get("d_sae")
    for name, value in (("d_in", d_in), ("d_sae", d_sae)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LayerscopeError(f"{cfg_path}: {name}={value!r} must be a positive integer")
    architecture = cfg.get("architecture", "standard")
    if architecture == "standard" and cfg.get("activation_fn", cfg.get("activation_fn_str")) == "topk":
        architecture = "topk"  # the pre-6 way of writing a TopK SAE
    if architecture not in loadable_architectures():
        raise LayerscopeError(
            f"{cfg_path}: architecture={architecture!r} is not supported; Layerscope reads "
            f"{', '.join(loadable_architectures())} SAEs"
        )
    options = architecture_class(architecture).read_saelens(cfg, d_sae, cfg_path)
    for key, bad, why in _UNSUPPORTED:
        if cfg.get(key) == bad:
            raise LayerscopeError(f"{cfg_path}: {key}={bad!r} ({why}) is not supported")
    rescale = cfg.get("rescale_acts_by_decoder_norm", False)
    if rescale not in (True, False, None):
        raise LayerscopeError(f"{cfg_path}: rescale_acts_by_decoder_norm={rescale!r} must be true or false")
    if rescale and architecture != "topk":
        raise LayerscopeError(f"{cfg_path}: rescale_acts_by_decoder_norm=True is defined for topk SAEs only, "
                              f"not for architecture={architecture!r}")
    normalize = _runtime_normalisation(cfg, cfg_path)
    sae = SparseAutoencoder(
        d_in, d_sae, architecture=architecture, apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        normalize_activations=normalize, info=_info(cfg), **options,
    )
    tensors = _read_weights(weights_path)
    if "scaling_factor" in tensors and bool(torch.all(tensors["scaling_factor"] == 1)):
        del tensors["scaling_factor"]  # older SAELens wrote an all-ones scaling factor; it changes nothing
    _check_weights(sae, tensors, weights_path)
    if rescale:
        tensors = fold_decoder_norms(tensors, weights_path)
        sae.info["folded_decoder_norms"] = True
    sae.load_state_dict({name: t.float() for name, t in tensors.items()})
    return sae.eval().requires_grad_(False)


def fold_decoder_norms(tensors: dict[str, torch.Tensor],
                       weights_path: Path | str = "weights") -> dict[str, torch.Tensor]:
    """SAELens' TopK ``rescale_acts_by_decoder_norm`` folded into the weights, exactly.

    SAELens' TopKSAE (sae_lens/saes/topk_sae.py) encodes with TopK((x' W_enc + b_enc) * |W_dec,i|)
    and decodes with (f / |W_dec,i|) W_dec + b_dec. Scaling column i of W_enc and b_enc by
    |W_dec,i| and dividing row i of W_dec by it gives the same latents and reconstructions with
    plain TopK (its own `_fold_norm_topk`). Computed in float64; a zero decoder row is refused.
    """
    norms = tensors["W_dec"].double().norm(dim=1)  # (d_sae,)
    if bool((norms == 0).any()):
        raise LayerscopeError(f"{weights_path}: W_dec has {int((norms == 0).sum())} zero rows, which "
                              "rescale_acts_by_decoder_norm divides by")
    folded = dict(tensors)
    folded["W_enc"] = (tensors["W_enc"].double() * norms).float()  # (d_in, d_sae)
    folded["b_enc"] = (tensors["b_enc"].double() * norms).float()
    folded["W_dec"] = (tensors["W_dec"].double() / norms[:, None]).float()  # (d_sae, d_in)
    return folded


def _read_cfg(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise LayerscopeError(f"SAE folder {str(folder)!r} does not exist")
    cfg_path = folder / CFG_FILENAME
    for path in (cfg_path, folder / WEIGHTS_FILENAME):
        if not path.is_file():
            raise LayerscopeError(
                f"{str(folder)!r} is not an SAELens SAE folder: {path.name} is missing "
                f"(expected {CFG_FILENAME} + {WEIGHTS_FILENAME})"
            )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LayerscopeError(f"{cfg_path} is not valid JSON ({err})") from None
    if not isinstance(cfg, dict):
        raise LayerscopeError(f"{cfg_path} must hold a JSON object; got {type(cfg).__name__}")
    return cfg


def _runtime_normalisation(cfg: dict[str, Any], cfg_path: Path) -> str:
    normalize = cfg.get("normalize_activations", "none")
    normalize = {True: "expected_average_only_in", False: "none", None: "none"}.get(normalize, normalize)
    if normalize not in RUNTIME_NORMALIZATIONS:
        raise LayerscopeError(f"{cfg_path}: normalize_activations={normalize!r} is not one of {RUNTIME_NORMALIZATIONS}")
    if normalize == "expected_average_only_in":
        logger.warning("%s: normalize_activations='expected_average_only_in' without a folded scaling factor; "
                       "inputs are used unscaled (as SAELens' load_from_disk does)", cfg_path.parent)
    return normalize


def _info(cfg: dict[str, Any]) -> dict[str, Any]:
    """Where the SAE came from: metadata (SAELens 6) or top-level keys (pre-6), plus Layerscope's own.

    ``layerscope_module`` is the module path of the SAE's layer: ``metadata.layerscope_module``,
    or the hook name itself where that is a module path (as Layerscope wrote it before it wrote
    TransformerLens hooks); None for a TransformerLens hook alone (see `module_for_hook`).
    """
    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}

    def read(key: str, default: Any = None) -> Any:
        return metadata.get(key, cfg.get(key, default))

    hook_name = read("hook_name", cfg.get("hook_point"))
    module = metadata.get(MODULE_KEY) or (hook_name if hook_name and not is_transformerlens_hook(hook_name) else None)
    return {
        "model_name": read("model_name"),
        "hook_name": hook_name,
        MODULE_KEY: module,
        "context_size": read("context_size"),
        "dataset_path": read("dataset_path"),
        "prepend_bos": read("prepend_bos", True),
        "sae_lens_version": read("sae_lens_version"),
        "sae_lens_training_version": read("sae_lens_training_version"),
        **(cfg.get("layerscope") or {}),
    }


def _check_weights(sae: SparseAutoencoder, tensors: dict[str, torch.Tensor], weights_path: Path) -> None:
    expected = {name: tuple(p.shape) for name, p in sae.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise LayerscopeError(
            f"{weights_path} does not hold the weights of a {sae.architecture} SAE: "
            + (f"missing {', '.join(missing)}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected {', '.join(extra)}" if extra else "")
            + f" (expected {', '.join(expected)})"
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise LayerscopeError(
                f"{weights_path}: {name} has shape {tuple(tensors[name].shape)} but cfg.json "
                f"(d_in={sae.d_in}, d_sae={sae.d_sae}) needs {shape}"
            )
        if not tensors[name].is_floating_point():  # float16/bfloat16 are widened exactly; integers are not weights
            raise LayerscopeError(f"{weights_path}: {name} has dtype {tensors[name].dtype}; SAE weights must be "
                                  "floating point (float32, float16 or bfloat16)")
        if not bool(torch.isfinite(tensors[name]).all()):
            raise LayerscopeError(f"{weights_path}: {name} holds NaN or inf values")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise LayerscopeError(f"{path} is not a readable safetensors file ({type(err).__name__}: {err})") from None
