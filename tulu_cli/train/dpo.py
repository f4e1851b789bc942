"""DPO on the shared loop: preference pairs, one forward pass per pair batch, precomputed or live reference.

``dpo_loss`` is the public loss function (sigmoid DPO, IPO, hinge; length normalisation is
applied to the log-probs before it). The recipe swaps SFT's data and loss for pairs and the
DPO objective; full fine-tuning, ``--lora`` and ``--qlora`` (reference = base with the adapter
disabled) share everything else with SFT: launcher, checkpoints, resume, metrics, plots.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.options.dpo import DPOOptions
from tulu_cli.train.loop import TrainingRecipe

REFERENCE_FORMAT = 1
REWARD_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/accuracy", "rewards/margin")


def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta: float,
             loss_type: str = "sigmoid", label_smoothing: float = 0.0):
    """Per-pair losses and implicit rewards ``beta * (policy - reference)`` of each side.

    ``sigmoid``: -log sigmoid(beta * h) with h = (pc - pr) - (rc - rr) (Rafailov et al.), with
    optional label smoothing (conservative DPO). ``ipo``: (h - 1/(2 beta))^2 (Azar et al.).
    ``hinge``: max(0, 1 - beta * h) (SLiC). Pass length-normalised log-probs for the normalised
    variant (``sigmoid_norm`` in the CLI).
    """
    import torch.nn.functional as F

    h = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    if loss_type in ("sigmoid", "sigmoid_norm"):
        losses = -F.logsigmoid(beta * h) * (1 - label_smoothing) - F.logsigmoid(-beta * h) * label_smoothing
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = F.relu(1 - beta * h)
    else:
        raise ValueError(f"unknown DPO loss {loss_type!r} (sigmoid, ipo, hinge, sigmoid_norm)")
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def sequence_logps(model, batch):
    """(summed log-prob of the target tokens, number of target tokens) of every row, one forward pass."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits[:, :-1, :].float()
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    safe = labels.masked_fill(~mask, 0)
    # log_softmax gathered at the label, without materialising the full log-prob tensor twice
    token_logps = torch.gather(logits, 2, safe.unsqueeze(2)).squeeze(2) - torch.logsumexp(logits, dim=-1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def preference_losses(policy, policy_tokens, reference, reference_tokens, beta: float, loss_type: str, label_smoothing: float = 0.0):
    """``dpo_loss`` on (chosen, rejected) log-prob sums; ``sigmoid_norm`` first divides each by its token count.

    The normalised variant compares average log-probs per response token, so a long response no
    longer wins (or loses) by its length alone.
    """
    (pc, pr), (rc, rr) = policy, reference
    if loss_type == "sigmoid_norm":
        pc, pr = pc / policy_tokens[0].clamp(min=1), pr / policy_tokens[1].clamp(min=1)
        rc, rr = rc / reference_tokens[0].clamp(min=1), rr / reference_tokens[1].clamp(min=1)
    return dpo_loss(pc, pr, rc, rr, beta, loss_type=loss_type, label_smoothing=label_smoothing)


class Recipe(TrainingRecipe):
    """The SFT loop with preference pairs, the DPO loss and reward metrics."""

    name = "dpo"
    options_class = DPOOptions

    # ---- model ---------------------------------------------------------------------------
    def build_model(self):
        from tulu_cli.train.metrics import log
        from tulu_cli.train.peft import adapter_only_checkpoints, apply_lora

        o = self.opts
        main = self.accelerator.is_main_process
        if not o.peft:
            return super().build_model()
        if o.qlora:
            from tulu_cli.models import resize_for_tokenizer, sync_special_token_ids
            from tulu_cli.train.peft import load_4bit_base, prepare_4bit

            model = load_4bit_base(o, self.accelerator.device)
            resize_for_tokenizer(model, self.tokenizer)
            sync_special_token_ids(model, self.tokenizer)
            model = prepare_4bit(model, o)
        else:
            model = super().build_model()
        if self.deepspeed_config is None:
            adapter_only_checkpoints(self.accelerator)
        return apply_lora(model, o, self.tokenizer, log=log if main else None)

    def build_optimizer(self, groups):
        from tulu_cli.train.peft import build_optimizer

        return build_optimizer(self.opts.optimizer, groups, self.opts)

    def save_model(self, target: Path) -> None:
        if self.opts.peft:
            from tulu_cli.train.peft import save_adapter

            save_adapter(self.accelerator, self.model, self.tokenizer, target)
        else:
            super().save_model(target)

    # ---- data ----------------------------------------------------------------------------
    @staticmethod
    def check_files(opts: DPOOptions) -> None:
        """Launcher preflight: --train-files must be readable preference rows (not SFT's chat rows)."""
        from tulu_cli.data.preference import check_readable

        for f in opts.train_files:
            check_readable(f)

    @staticmethod
    def encode_data(opts: DPOOptions, tokenizer, *, build: bool = True, overwrite_cache: bool = False, quiet_hit: bool = True):
        from tulu_cli.data.preference import preference_dataset
        from tulu_cli.models import tokenizer_fingerprint
        from tulu_cli.train.metrics import log

        o = opts
        return preference_dataset(
            tokenizer=tokenizer, tokenizer_hash=tokenizer_fingerprint(tokenizer), train_files=o.train_files,
            dataset=o.dataset, dataset_config=o.dataset_config, dataset_split=o.dataset_split, template=o.template,
            max_seq_length=o.max_seq_length, add_bos=o.add_bos, max_train_samples=o.max_train_samples, cache_dir=o.cache_dir,
            overwrite_cache=overwrite_cache, build=build, quiet_hit=quiet_hit, log=log,
        )

    def build_collator(self):
        from tulu_cli.data.preference import PairCollator

        return PairCollator(self.tokenizer.pad_token_id)

    def count_terms(self, batch) -> int:
        return int(batch["index"].numel())

    def count_input_tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum())

    # ---- reference -----------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.reference_table = None
        self.reference_model = None
        if self.opts.reference == "precompute":
            import time

            t0 = time.time()
            self.reference_table = self.precompute_reference()
            # recorded in tulu_run.json beside the data description
            self.data_info["reference"] = {"path": str(self.reference_path()), "seconds": round(time.time() - t0, 3), "cache_hit": self._reference_hit}
        elif not self.opts.peft:
            self.reference_model = self.load_live_reference()

    def reference_key(self) -> str:
        """Hash of what the reference log-probs depend on: model files, precision, quantisation, data and encoding."""
        o = self.opts
        model_id: dict[str, Any] = {"model": o.model, "revision": o.revision, "config_name": o.config_name}
        folder = Path(o.model)
        if folder.is_dir():
            model_id["model"] = str(folder.resolve())
            # name, size and mtime of every file: rewriting the weights invalidates without hashing gigabytes
            model_id["files"] = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
        blob = {
            "format": REFERENCE_FORMAT,
            "reference_model": model_id,
            "dtype": o.dtype,
            "attn": o.attn_implementation,
            "quant": [o.bnb_4bit_quant_type, o.bnb_4bit_double_quant, o.bnb_4bit_compute_dtype] if o.qlora else None,
            "data": self.data_info["cache_key"],
            "source": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def reference_path(self) -> Path:
        from tulu_cli.paths import cache_root

        root = Path(self.opts.cache_dir) / "preference" if self.opts.cache_dir else cache_root("preference")
        return root / "reference" / f"{self.reference_key()}.json"

    def precompute_reference(self):
        """(N, 4) tensor of reference (chosen logp, rejected logp, chosen tokens, rejected tokens) per pair, cached on disk."""
        import torch

        from tulu_cli.train.metrics import log

        acc = self.accelerator
        path = self.reference_path()
        self._reference_hit = path.is_file()
        if path.is_file():
            table = torch.tensor(json.loads(path.read_text())["table"], dtype=torch.float64)
            if self.is_main:
                log(f"reference log-probs found in cache {path}: skipped the reference pass ({len(table)} pairs)")
            return table
        if self.global_step > 0 and not self.opts.peft:
            raise TuluError(
                f"--resume: the reference log-probs of this run are no longer in the cache ({path}) and the policy has moved "
                "since; restore the cache folder, or resume with --reference live"
            )
        n = len(self.dataset)
        world, rank, b = acc.num_processes, acc.process_index, self.opts.per_device_batch_size
        steps = -(-n // (b * world))
        order = list(range(n)) + list(range(n))[: steps * b * world - n]  # every rank runs the same number of passes
        if self.is_main:
            log(f"computing reference log-probs for {n} pairs (once; cached for later runs)")
        rows = []
        self.model.eval()
        with torch.no_grad():
            for s in range(steps):
                idx = order[s * b * world + rank * b : s * b * world + (rank + 1) * b]
                batch = {k: v.to(acc.device) for k, v in self.collator([self.dataset[j] for j in idx]).items()}
                logps, ntok = self._reference_logps(batch)
                k = len(idx)
                rows.append(torch.stack([batch["index"].double(), logps[:k].double(), logps[k:].double(), ntok[:k].double(), ntok[k:].double()], 1))
        self.model.train()
        local = torch.cat(rows)
        gathered = acc.gather(local).cpu()
        table = torch.zeros((n, 4), dtype=torch.float64)
        table[gathered[:, 0].long()] = gathered[:, 1:]
        if self.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"pairs": n, "options": {"model": self.opts.model, "data": self.data_info["cache_key"]}, "table": table.tolist()}))
            os.replace(tmp, path)
            log(f"reference log-probs cached at {path}")
        acc.wait_for_everyone()
        return table

    def _reference_logps(self, batch):
        """Reference log-probs: the adapter switched off (LoRA/QLoRA), the frozen copy (live), else the policy itself (before training)."""
        import torch

        with torch.no_grad():
            if self.opts.peft:
                unwrapped = self.accelerator.unwrap_model(self.model)
                with unwrapped.disable_adapter(), self.accelerator.autocast():
                    return sequence_logps(unwrapped, batch)
            if self.reference_model is not None:
                with self.accelerator.autocast():
                    return sequence_logps(self.reference_model, batch)
            return sequence_logps(self.model, batch)

    def load_live_reference(self):
        """A frozen copy of the starting model; under DeepSpeed an inference engine sharded like the policy (ZeRO-3)."""
        from tulu_cli.models import load_causal_lm, resize_for_tokenizer

        o = self.opts
        # Under ZeRO-3, accelerate's active DeepSpeed config makes from_pretrained load each rank's shard only.
        ref = load_causal_lm(o.model, dtype=o.dtype if self.deepspeed_config is not None else "fp32", attn_implementation=o.attn_implementation,
                             revision=o.revision, trust_remote_code=o.trust_remote_code, config_name=o.config_name)
        resize_for_tokenizer(ref, self.tokenizer)
        ref.requires_grad_(False)
        ref.eval()
        if self.deepspeed_config is None:
            return ref.to(self.accelerator.device)
        import copy

        import deepspeed

        cfg = copy.deepcopy(self.accelerator.state.deepspeed_plugin.deepspeed_config)
        for key in ("optimizer", "scheduler"):
            cfg.pop(key, None)
        if cfg["zero_optimization"].get("stage") != 3:
            cfg["zero_optimization"] = {"stage": 0}  # ZeRO-1/2 shard optimizer state only: a frozen model has none
        engine, *_ = deepspeed.initialize(model=ref, config=cfg)
        engine.eval()
        return engine

    # ---- loss and metrics ----------------------------------------------------------------
    def loss_terms(self, model, batch):
        import torch

        o = self.opts
        k = batch["index"].numel()
        logps, ntok = sequence_logps(model, batch)
        pc, pr = logps[:k], logps[k:]
        if self.reference_table is not None:
            ref = self.reference_table[batch["index"].cpu()].to(device=logps.device, dtype=logps.dtype)
            rc, rr, rc_n, rr_n = ref[:, 0], ref[:, 1], ref[:, 2], ref[:, 3]
        else:
            ref_logps, ref_ntok = self._reference_logps(batch)
            rc, rr = ref_logps[:k].to(logps.dtype), ref_logps[k:].to(logps.dtype)
            rc_n, rr_n = ref_ntok[:k], ref_ntok[k:]
        losses, chosen_r, rejected_r = preference_losses(
            (pc, pr), (ntok[:k], ntok[k:]), (rc, rr), (rc_n, rr_n), o.beta, o.loss, o.label_smoothing
        )
        # Sums over the pairs: the loop reduces them like the loss and logs each per pair.
        extra = {
            "rewards/chosen": chosen_r.sum(),
            "rewards/rejected": rejected_r.sum(),
            "rewards/accuracy": (chosen_r > rejected_r).float().sum(),
            "rewards/margin": (chosen_r - rejected_r).sum(),
        }
        return losses.sum(), torch.tensor(k, device=logps.device), extra


def run(options: DPOOptions) -> Path:
    """Python entry (what the quickstart calls): train with DPO; returns the run folder."""
    from tulu_cli.train.launch import launch

    return launch(options)
