"""train-vision: teach the writer to see, in a child process like text training.

Stage 1 trains the projector on captions, the tower and the language model
frozen. Stage 2 (optional) goes on from a stage-1 model with LoRA on the
language model and, when asked, the tower unfrozen; its LoRA is merged at the
end. Either way the run ends with `<run>/model/`, a LLaVA folder that
transformers and the engine load as it is.

Progress, ETA, evaluation, the loss plot (progress.jsonl), checkpoints and
resume are the text trainer's (train/): the same callback, the same Trainer
subclass, the same run lock, read by the same `TrainJob`. A checkpoint holds
only the weights that train (`trainable.safetensors`), not the frozen model.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..checkpoints import INCOMPLETE_MARKER, TRAINER_STATE, checkpoint_step, replace_folder
from ..config import TrainConfig
from ..train.progress import PROGRESS_FILE, ProgressLog, make_progress_callback
from .language import KNOWN
from .pairs import data_kind, read_pairs, split_pairs

MODEL_DIRNAME = "model"  # the run's result: a servable model folder
TRAINABLE_FILE = "trainable.safetensors"  # a checkpoint's weights: the trained parameters only
LM_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class VisionTrainArgs:
    data: Path  # images/ + captions.json, or a dataset saved with save_to_disk
    output_dir: Path  # this run's folder
    base_model: Optional[Path] = None  # the language model (stage 1)
    tower: Optional[Path] = None  # CLIP or SigLIP folder (stage 1)
    from_model: Optional[Path] = None  # stage 2: the model folder of a stage-1 run
    stage: int = 1
    unfreeze_tower: bool = False  # stage 2: train the tower too
    epochs: float = 3.0
    lr: float = 1e-3
    batch_size: int = 8
    save_steps: int = 50
    lora_r: int = 16
    lora_alpha: int = 32
    val_share: float = 0.1
    seed: int = 42
    languages: tuple[str, ...] = KNOWN
    max_side: int = 1024
    prompt_format: str = "auto"
    resume: Optional[str] = None  # "latest" or a checkpoint folder
    max_steps: int = -1

    def check(self) -> None:
        """Mistakes found before the run's folder is made."""
        data_kind(self.data)
        if self.stage not in (1, 2):
            raise ValueError(f"--stage must be 1 or 2, not {self.stage}")
        if self.stage == 1 and (self.tower is None or self.base_model is None):
            raise ValueError("stage 1 needs --tower (a CLIP or SigLIP folder) and a base language model")
        if self.stage == 2 and self.from_model is None and (self.tower is None or self.base_model is None):
            raise ValueError("stage 2 needs --from-model (a stage-1 model folder), or --tower and a base model")
        if self.tower is not None and self.from_model is None:
            from .tower import read_tower

            read_tower(self.tower)  # TowerError naming the folder


def run_vision_training(args: VisionTrainArgs) -> Path:
    """Train, holding the run's lock throughout; returns the model folder."""
    from ..train.run_lock import RunLock

    args.check()
    with RunLock(args.output_dir):
        return _run(args)


def _run(args: VisionTrainArgs) -> Path:
    import torch

    from ..train.qlora import TrainingBlocks, fit, resume_point, stop_on_signals, training_arguments
    from .examples import CaptionDataset, caption_prompt

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = ProgressLog(out / PROGRESS_FILE)
    torch.manual_seed(args.seed)
    pairs = read_pairs(args.data, args.languages, args.max_side)  # bad data fails here, before the model loads
    for line in pairs.problems:
        log.emit("warning", kind="bad_pair", message=f"left out: {line}")
    for line in pairs.notes:
        log.emit("note", message=line)
    train_pairs, val_pairs = split_pairs(pairs.pairs, args.val_share, args.seed)

    model, processor = _model(args)
    _set_trainable(model, args)
    if args.stage == 2:
        model = _add_lora(model, args)
    tokenizer = processor.tokenizer
    # The format the engine will choose for the saved folder (by its name), so serving asks as training did.
    prompt = caption_prompt(tokenizer, MODEL_DIRNAME, model.config.image_token_index,
                            model.config.image_seq_length, args.prompt_format)
    train_ds = CaptionDataset(train_pairs, prompt, tokenizer, processor.image_processor)
    val_ds = CaptionDataset(val_pairs, prompt, tokenizer, processor.image_processor)
    t = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, grad_accum=1,
                    save_steps=args.save_steps, seed=args.seed, max_steps=args.max_steps, warmup_ratio=0.05,
                    output_dir=out.parent)
    steps = args.max_steps if args.max_steps > 0 else -(-len(train_ds) // args.batch_size) * max(1, round(args.epochs))
    blocks = TrainingBlocks(train=train_pairs, val=val_pairs, val_available=len(val_pairs), total_steps=steps,
                            eval_on_start=bool(val_pairs) and not args.resume)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    (out / "run.json").write_text(json.dumps({**asdict(args), "kind": "vision", "pairs": len(pairs.pairs),
                                              "left_out": pairs.problems, "train_pairs": len(train_pairs),
                                              "val_pairs": len(val_pairs), "trainable_parameters": trainable,
                                              "prompt_format": prompt.prompt_format}, default=str, indent=2),
                                  encoding="utf-8")
    stop_flag = stop_on_signals()
    tokens = args.batch_size * (len(prompt.ids) + 16)
    progress = make_progress_callback(log, tokens_per_step=tokens, train_blocks=len(train_pairs),
                                      val_blocks=len(val_pairs), lr=args.lr, stop_on_loss_rise=False,
                                      stop_flag=stop_flag)
    targs = training_arguments(t, out, blocks, bf16=False, checkpointing=False)
    trainer = _trainer(model, targs, train_ds, val_ds, tokenizer, progress)
    fit(trainer, resume_point(args.resume, out, log, latest=latest_vision_checkpoint,
                              is_complete=is_complete_vision_checkpoint), log, stop_flag)
    final = save_result(trainer.model, processor, out, stage=args.stage)
    step = trainer.state.global_step
    metrics = progress.evals.get(step) or (trainer.evaluate() if len(val_ds) else {})
    log.emit("done", adapter=None, model=str(final), stopped_early=stop_flag["flag"],
             eval_loss=metrics.get("eval_loss"), step=step, train_s=round(progress.train_s, 2),
             eval_s=round(progress.eval_s, 2))
    return final


def _model(args: VisionTrainArgs):
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from .assemble import assemble

    if args.from_model is not None:
        model = LlavaForConditionalGeneration.from_pretrained(args.from_model, dtype=torch.float32)
        return model, AutoProcessor.from_pretrained(args.from_model)
    return assemble(args.tower, args.base_model)


def _set_trainable(model, args: VisionTrainArgs) -> None:
    """Stage 1: the projector alone. Stage 2: the projector, and the tower when asked (LoRA comes next)."""
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("model.multi_modal_projector.") or (
            args.stage == 2 and args.unfreeze_tower and name.startswith("model.vision_tower."))


def _add_lora(model, args: VisionTrainArgs):
    """LoRA on the language model's linear layers; what `_set_trainable` opened stays trainable."""
    from peft import LoraConfig, get_peft_model

    keep = [n for n, p in model.named_parameters() if p.requires_grad]
    peft_model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0,
                                                  target_modules=LM_LINEAR))
    for name, p in peft_model.base_model.model.named_parameters():
        if name in keep:
            p.requires_grad = True
    return peft_model


def _trainer(model, targs, train_ds, val_ds, tokenizer, progress):
    from safetensors.torch import load_file, save_file

    from ..train.trainer import InkstoneTrainer
    from .examples import collate

    class VisionTrainer(InkstoneTrainer):
        """Checkpoints hold the trained parameters only; resume puts them back."""

        def _save(self, output_dir=None, state_dict=None):
            folder = Path(output_dir or self.args.output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            weights = {n: p.detach().contiguous() for n, p in self.model.named_parameters() if p.requires_grad}
            save_file(weights, str(folder / TRAINABLE_FILE), metadata={"format": "pt"})

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            weights = load_file(str(Path(resume_from_checkpoint) / TRAINABLE_FILE))
            missing = set(weights) - {n for n, _ in self.model.named_parameters()}
            if missing:
                raise ValueError(f"{resume_from_checkpoint}: weights of another model ({sorted(missing)[0]}, ...)")
            self.model.load_state_dict(weights, strict=False)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return VisionTrainer(model=model, args=targs, train_dataset=train_ds, eval_dataset=val_ds if len(val_ds) else None,
                         data_collator=collate(pad), callbacks=[progress])


def is_complete_vision_checkpoint(folder: Path) -> bool:
    """As for text checkpoints (checkpoints.py): trainer state written last, no marker; the weights are ours."""
    folder = Path(folder)
    return ((folder / TRAINABLE_FILE).is_file() and (folder / TRAINER_STATE).is_file()
            and not (folder / INCOMPLETE_MARKER).exists())


def latest_vision_checkpoint(run_dir: Path) -> Optional[Path]:
    found = sorted((checkpoint_step(p), p) for p in Path(run_dir).glob("checkpoint-*")
                   if checkpoint_step(p) is not None and is_complete_vision_checkpoint(p))
    return found[-1][1] if found else None


def save_result(model, processor, out: Path, *, stage: int) -> Path:
    """`<run>/model/`: LoRA merged in (stage 2), written beside the old one and swapped in whole."""
    from .assemble import save_model

    if stage == 2:
        model = model.merge_and_unload()
    return replace_folder(out / MODEL_DIRNAME, lambda folder: save_model(model, processor, folder))
