"""Sparse autoencoders on one layer's token activations, in SAELens' on-disk format.

Two architectures are trained (METRICS.md, "Sparse autoencoders"), and jumprelu SAEs load
from SAELens; each architecture is one file of `architectures/`, registered by name:

* ``"topk"`` (Gao et al. 2024): f = ReLU(TopK(W_enc^T (x - b_dec) + b_enc)), exactly the k
  largest pre-activations survive; decoder rows kept at unit norm; dead latents are
  revived with the AuxK loss (the top ``d_in // 2`` dead latents reconstruct the residual).
* ``"standard"`` (ReLU + L1, Bricken et al. 2023, with the April 2024 update's L1 weighted by
  decoder norms): f = ReLU(W_enc^T (x - b_dec) + b_enc), loss = |x - x_hat|^2 +
  l1 * sum_i f_i |W_dec,i|; dead latents are resampled towards badly reconstructed inputs at
  1/4, 1/2 and 3/4 of training.

Both reconstruct x_hat = W_dec^T f + b_dec. Names and shapes follow SAELens: W_enc (d_in, d_sae),
b_enc (d_sae,), W_dec (d_sae, d_in), b_dec (d_in,). Inputs are scaled during training so that
their mean norm is sqrt(d_in); the factor is folded into the weights afterwards, so a saved
SAE takes raw activations.

Modules: config (SAEConfig), architectures/, model (SparseAutoencoder), scaler (activation
normalisation), batches (a run's token rows, held-out split, activation batches), history and
trainer (SAETrainer, train_sae), evaluation (evaluate_sae, next_token_losses), saelens
(cfg.json + safetensors), entries (SAEs as Store entries ``results/sae/<key>/``) and pipeline
(train_sae_on_run, import_saelens).
"""

from core.analysis.sae.architectures import (
    Architecture,
    architecture_class,
    loadable_architectures,
    register_architecture,
    trainable_architectures,
)
from core.analysis.sae.batches import activation_batches, check_tokens_run, held_out_split, token_rows
from core.analysis.sae.config import SAEConfig
from core.analysis.sae.entries import (
    SAE_KIND,
    SAE_VERSION,
    StoredSAE,
    delete_sae,
    describe_sae,
    list_saes,
    open_sae,
    sae_key,
)
from core.analysis.sae.evaluation import SAEEvaluation, evaluate_sae, next_token_losses
from core.analysis.sae.history import HISTORY_FIELDS, TrainingHistory
from core.analysis.sae.model import SparseAutoencoder
from core.analysis.sae.pipeline import evaluate_on_run, import_saelens, train_sae_on_run
from core.analysis.sae.saelens import (
    CFG_FILENAME,
    SAELENS_FORMAT_VERSION,
    WEIGHTS_FILENAME,
    load_saelens,
    save_saelens,
    saelens_config,
)
from core.analysis.sae.scaler import NORMALIZATIONS, RUNTIME_NORMALIZATIONS
from core.analysis.sae.trainer import SAETrainer, SAETrainingStopped, TrainProgress, train_sae

ARCHITECTURES = trainable_architectures()  # name -> description of the architectures trained here
LOADABLE_ARCHITECTURES = loadable_architectures()  # names read from SAELens folders

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "CFG_FILENAME",
    "HISTORY_FIELDS",
    "LOADABLE_ARCHITECTURES",
    "NORMALIZATIONS",
    "RUNTIME_NORMALIZATIONS",
    "SAELENS_FORMAT_VERSION",
    "SAEConfig",
    "SAEEvaluation",
    "SAETrainer",
    "SAETrainingStopped",
    "SAE_KIND",
    "SAE_VERSION",
    "SparseAutoencoder",
    "StoredSAE",
    "TrainProgress",
    "TrainingHistory",
    "WEIGHTS_FILENAME",
    "activation_batches",
    "architecture_class",
    "check_tokens_run",
    "delete_sae",
    "describe_sae",
    "evaluate_on_run",
    "evaluate_sae",
    "held_out_split",
    "import_saelens",
    "list_saes",
    "load_saelens",
    "loadable_architectures",
    "next_token_losses",
    "open_sae",
    "register_architecture",
    "sae_key",
    "save_saelens",
    "saelens_config",
    "token_rows",
    "train_sae",
    "train_sae_on_run",
    "trainable_architectures",
]
