"""Models: `load_model(name_or_path, ...)` -> `LoadedModel`.

Accepted names:
    "minilm", "smollm2", "efficientnet-lite0"   bundled real weights, offline
    "digits-mlp" / "digits-mlp:seed=1"            small MLP trained on demo:digits in seconds
    a local Hugging Face model folder              config.json + weights
    a hub id such as "org/name"                    needs network (clear error without)
    "package.module:factory"                       any torch.nn.Module, with `preprocess`
    an nn.Module instance                          from Python, with `preprocess`
`reinit=True` gives the same architecture with freshly initialised weights
(the "untrained" control), seeded.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import pickle
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from core.errors import LayerscopeError
from core.validation import check_choice
from core.models.layers import default_layers, hookable_layers, resolve_layers, text_default_layers

logger = logging.getLogger(__name__)

BUNDLED = {
    "minilm": "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384 wide)",
    "smollm2": "SmolLM2-135M-Instruct causal LM (Llama, 30 layers, 576 wide)",
    "efficientnet-lite0": "EfficientNet-Lite0 ImageNet CNN (16 blocks)",
    "digits-mlp": "3-layer MLP trained on demo:digits (seed selectable: digits-mlp:seed=1)",
}


@dataclass(eq=False)
class LoadedModel:
    """A model ready for extraction, with what is needed to feed it."""

    name: str  # what the user asked for: "minilm", a folder, a hub id, "pkg.mod:factory"
    module: nn.Module  # the full model; layer paths are relative to it
    modality: str  # "text" or "image"
    weights_hash: str  # sha256 prefix of the weights (or "reinit:<seed>:" + architecture hash)
    tokenizer: Any = None  # HF tokenizer for text models
    preprocess: Callable | None = None  # inputs -> tensor or dict of tensors (modules, images)
    forward_module: nn.Module | None = None  # what extraction calls (e.g. the base model, skipping lm_head)
    is_causal_lm: bool = False
    description: str = ""
    max_length: int = 512
    extra: dict = field(default_factory=dict)
    checked_layers: list[str] | None = None  # default layers checked by a forward pass at load (models.layers)
    token_outputs: bool = False  # image model whose layers give (batch, tokens, d) with a class token first (ViT)

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, modality={self.modality!r}, weights={self.weights_hash[:12]})"

    @property
    def identity(self) -> dict[str, Any]:
        """Everything about the model that changes its activations (goes into store keys)."""
        return {"name": self.name, "weights": self.weights_hash, "modality": self.modality}

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def poolings(self) -> tuple[str, ...]:
        """The poolings that fit this model's outputs."""
        from core.extract.pooling import IMAGE_POOLINGS, POOLINGS, TOKEN_IMAGE_POOLINGS

        if self.tokenizer is not None:
            return POOLINGS
        return TOKEN_IMAGE_POOLINGS if self.token_outputs else IMAGE_POOLINGS

    def layer_names(self) -> list[str]:
        """Every hookable module path, and the "<path>:input" layers of the default set."""
        return hookable_layers(self.module, inputs=self.default_layers())

    def default_layers(self) -> list[str]:
        """The residual stream: hidden_states[0], then every block's output."""
        return list(self.checked_layers) if self.checked_layers is not None else default_layers(self.module)

    def resolve_layers(self, layers) -> list[str]:
        return resolve_layers(self.module, layers, model_name=self.name, defaults=self.default_layers())


def load_model(
    name_or_path: str | os.PathLike | nn.Module,
    *,
    preprocess: Callable | str | None = None,
    modality: str | None = None,
    trust_remote_code: bool = False,
    reinit: bool = False,
    seed: int = 0,
    device: str | None = None,
    workspace: str | os.PathLike | None = None,
) -> LoadedModel:
    """Load a model by bundled name, folder, hub id, "pkg.mod:factory" or nn.Module.

    preprocess: for modules, a callable (or "pkg.mod:fn") mapping a list of
        inputs (strings or PIL images) to a tensor or a dict of tensors.
    modality: "text" or "image" for modules (default "text").
    reinit: re-initialise all weights (seeded) - the untrained control.
    device: "cpu", "cuda" or None for automatic.
    workspace: where converted weights (smollm2) are kept; default the store's.
    """
    from core.device import pick_device

    torch_device = pick_device(device)
    if isinstance(name_or_path, nn.Module):
        loaded = _from_module(name_or_path, f"module:{type(name_or_path).__name__}", preprocess, modality)
    else:
        name = str(name_or_path)
        base = name.split(":", 1)[0]
        if base in BUNDLED and (":" not in name or base == "digits-mlp"):
            from core.models import bundled

            loaded = bundled.load_bundled(name, workspace=workspace)
        elif ":" in name and not Path(name).exists():
            loaded = _from_factory(name, preprocess, modality)
        elif Path(name).expanduser().exists():
            loaded = _from_hf_folder(Path(name).expanduser().resolve(), trust_remote_code=trust_remote_code)
        elif _looks_like_hub_id(name):
            loaded = _from_hub(name, trust_remote_code=trust_remote_code)
        else:
            raise LayerscopeError(
                f"model {name!r} is not a bundled model ({', '.join(BUNDLED)}), an existing folder, "
                "a hub id like 'org/name', or 'package.module:factory'"
            )
    if reinit:
        reinitialise(loaded, seed=seed)
    loaded.module.to(torch_device).eval()
    return loaded


def reinitialise(loaded: LoadedModel, *, seed: int) -> None:
    """Replace every weight by a fresh, seeded initialisation (in place)."""
    module = loaded.module
    init = getattr(module, "_init_weights", None)
    # initialisers draw from the global generator: seed a private copy of it, so that loading a
    # model (cached and shared by every dashboard session) leaves everyone else's random state alone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
            if callable(init) and hasattr(module, "config"):
                init(sub)
    if hasattr(module, "tie_weights"):
        module.tie_weights()
    loaded.weights_hash = f"reinit{seed}-{architecture_hash(module)}"
    loaded.name = f"{loaded.name} (untrained, seed {seed})"
    loaded.description = f"re-initialised {loaded.description}"


def architecture_hash(module: nn.Module) -> str:
    text = json.dumps([(n, list(p.shape)) for n, p in module.named_parameters()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_dict_hash(module: nn.Module) -> str:
    """sha256 prefix of every parameter and buffer (for small in-memory models)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def weight_files_hash(folder: Path) -> str:
    """sha256 prefix over a folder's weight files (safetensors, bin, gguf, pth)."""
    from core.store import file_sha256

    files = sorted(
        p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf", ".pth", ".pt"}
    )
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(_cached_file_hash(file, file_sha256).encode())
    return digest.hexdigest()[:20]


_file_hashes: dict[tuple[str, int, int], str] = {}


def _cached_file_hash(file: Path, hasher) -> str:
    stat = file.stat()
    stamp = (str(file), stat.st_size, stat.st_mtime_ns)
    if stamp not in _file_hashes:
        _file_hashes[stamp] = hasher(file)
    return _file_hashes[stamp]


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def hf_model_from(
    source, *, causal: bool, trust_remote_code: bool, encoder_only: bool = False, **kwargs
) -> nn.Module:
    """A transformers model in float32: the causal LM, the text encoder of an encoder-decoder, or the base model."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForTextEncoding
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    auto = AutoModelForTextEncoding if encoder_only else AutoModelForCausalLM if causal else AutoModel
    return auto.from_pretrained(source, trust_remote_code=trust_remote_code, dtype=torch.float32, **kwargs)


def wrap_hf(name: str, model: nn.Module, tokenizer, description: str, weights_hash: str) -> LoadedModel:
    """A LoadedModel around a transformers model + tokenizer."""
    causal = model.__class__.__name__.endswith(("ForCausalLM", "LMHeadModel"))
    forward = getattr(model, "base_model", model) if causal else model
    max_positions = getattr(model.config, "max_position_embeddings", 512) or 512
    checked = text_default_layers(model, forward, tokenizer, causal=causal)
    return LoadedModel(
        name=name,
        module=model,
        modality="text",
        weights_hash=weights_hash,
        tokenizer=tokenizer,
        forward_module=forward,
        is_causal_lm=causal,
        description=description,
        max_length=int(min(max_positions, 512)),
        checked_layers=checked,
    )


def _is_causal_config(config) -> bool:
    architectures = getattr(config, "architectures", None) or []
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)


def _encoder_only(config) -> bool:
    """True for the T5-style families (T5, mT5, UMT5) whose text encoder transformers loads alone.

    AutoModel would build their whole encoder-decoder, whose decoder needs target tokens to
    run: Layerscope reads the encoder, of an encoder-only folder or of a full one. Other
    encoder-decoder families are refused by name.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES

    if MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES.get(config.model_type, "").endswith("EncoderModel"):
        return True
    if getattr(config, "is_encoder_decoder", False):
        raise LayerscopeError(
            f"{config.model_type} is an encoder-decoder family that Layerscope cannot read: its decoder needs "
            "target tokens, and transformers has no encoder-only class for it. Save its encoder on its own "
            "(model.get_encoder()) or use a T5-family model, whose encoder is read"
        )
    return False


def _hf_description(config, where: str, encoder_only: bool) -> str:
    architectures = getattr(config, "architectures", None) or []
    if encoder_only and not any(a.endswith("EncoderModel") for a in architectures):
        return f"{config.model_type} encoder (the decoder is not loaded) from {where}"
    return f"{config.model_type} from {where}"


def _from_hf_folder(folder: Path, *, trust_remote_code: bool) -> LoadedModel:
    from transformers import AutoConfig, AutoTokenizer

    if not (folder / "config.json").is_file():
        raise LayerscopeError(
            f"model folder {str(folder)!r} has no config.json; expected a Hugging Face model folder "
            "(config.json + weights + tokenizer files)"
        )
    from core.models import hf_vision

    code = hf_vision.read_config(folder).get("auto_map")
    if code and not trust_remote_code:
        # transformers would import the folder's own .py files; that runs only when the user says so
        raise LayerscopeError(
            f"model folder {str(folder)!r} ships its own code (config.json auto_map: {json.dumps(code)[:120]}), "
            "which is not run unless you pass --trust-remote-code (trust_remote_code=True)"
        )
    if hf_vision.is_vision_folder(folder):
        return hf_vision.load_vision_folder(folder, trust_remote_code=trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        encoder_only = _encoder_only(config)
        model = hf_model_from(
            folder, causal=_is_causal_config(config), trust_remote_code=trust_remote_code, encoder_only=encoder_only
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise LayerscopeError(f"could not load a Hugging Face model from {str(folder)!r}: {_first_line(err)}") from err
    except pickle.UnpicklingError:  # torch.load(weights_only=True) met an object that would run code on load
        raise LayerscopeError(
            f"model folder {str(folder)!r} holds a pickled checkpoint with objects other than tensors; it is refused "
            "because loading it could run code (convert it to safetensors)"
        ) from None
    description = _hf_description(config, folder.name, encoder_only)
    return wrap_hf(str(folder), model, tokenizer, description, weight_files_hash(folder))


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached, or None. One TCP connection instead of huggingface_hub's
    retries (about 25 s on a closed network). Skipped behind a proxy, which only the HTTP client knows."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"{host}:{port} is not reachable: {err.strerror or err}"
    return None


def _from_hub(hub_id: str, *, trust_remote_code: bool) -> LoadedModel:
    try:  # the local cache first (no network), then the hub if it can be reached
        return _load_hub(hub_id, trust_remote_code, local_files_only=True)
    except LayerscopeError:
        raise
    except (OSError, ValueError, KeyError):
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    why = "HF_HUB_OFFLINE is set" if offline else _hub_unreachable()
    if why is not None:
        raise LayerscopeError(
            f"could not load {hub_id!r} from the Hugging Face hub: it is not cached here and {why}. "
            "Download it on a machine with network and pass the folder path instead"
        )
    try:
        return _load_hub(hub_id, trust_remote_code, local_files_only=False)
    except (OSError, ValueError, KeyError) as err:
        raise LayerscopeError(
            f"could not load {hub_id!r} from the Hugging Face hub: it is not cached here and the hub "
            f"does not have it or could not serve it ({_first_line(err)}). Download it on a machine "
            "with network and pass the folder path instead"
        ) from err


def _load_hub(hub_id: str, trust_remote_code: bool, local_files_only: bool) -> LoadedModel:
    from transformers import AutoConfig, AutoTokenizer

    options = {"trust_remote_code": trust_remote_code, "local_files_only": local_files_only}
    config = AutoConfig.from_pretrained(hub_id, **options)
    encoder_only = _encoder_only(config)
    model = hf_model_from(hub_id, causal=_is_causal_config(config), encoder_only=encoder_only, **options)
    tokenizer = AutoTokenizer.from_pretrained(hub_id, **options)
    revision = getattr(config, "_commit_hash", None) or "unknown"
    weights = hashlib.sha256(f"{hub_id}@{revision}".encode()).hexdigest()[:20]
    return wrap_hf(hub_id, model, tokenizer, _hf_description(config, "the hub", encoder_only), weights)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _import_object(spec: str, what: str):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise LayerscopeError(f"{what} {spec!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise LayerscopeError(f"{what} {spec!r}: cannot import {module_name!r} ({_first_line(err)})") from err
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LayerscopeError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _from_factory(spec: str, preprocess, modality) -> LoadedModel:
    factory = _import_object(spec, "model factory")
    if not callable(factory):
        raise LayerscopeError(f"model factory {spec!r} is not callable")
    made = factory()
    if isinstance(made, tuple) and len(made) == 2:
        made, made_preprocess = made
        preprocess = preprocess or made_preprocess
    if not isinstance(made, nn.Module):
        raise LayerscopeError(f"model factory {spec!r} returned {type(made).__name__}; it must return an nn.Module")
    return _from_module(made, spec, preprocess, modality)


def _from_module(module: nn.Module, name: str, preprocess, modality) -> LoadedModel:
    if isinstance(preprocess, str):
        preprocess = _import_object(preprocess, "preprocess")
    if preprocess is None or not callable(preprocess):
        raise LayerscopeError(
            f"model {name!r} is a plain nn.Module; pass preprocess= a function mapping a list of inputs "
            "to a tensor or a dict of tensors"
        )
    modality = check_choice("modality", modality or "text", ("text", "image"))
    return LoadedModel(
        name=name,
        module=module,
        modality=modality,
        weights_hash=state_dict_hash(module),
        preprocess=preprocess,
        description=f"{type(module).__name__} ({sum(p.numel() for p in module.parameters()):,} parameters)",
    )
